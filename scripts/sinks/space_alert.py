# events: space.unhealthy
# description: Raise custom.alerts.space_down once a space fails three health checks in a row
#
# Try it:  knot run scripts/sinks/space_alert.py --event space.unhealthy \
#              --data '{"space_name": "web", "consecutive_failures": 3}'
import knot.event

THRESHOLD = 3

failures = knot.event.get_int("consecutive_failures", 0)
name = knot.event.get_string("space_name") or knot.event.space()["name"]

if failures >= THRESHOLD:
    alert = knot.event.emit(
        "alerts.space_down",
        {"space": name, "failures": failures, "checked_at": knot.event.get_string("checked_at")},
    )
    print(f"{name} failed {failures} checks in a row: raised alert {alert}")
else:
    print(f"{name} failed {failures} check(s); alerting at {THRESHOLD}")
