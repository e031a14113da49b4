# events: space.unhealthy, space.healthy
# description: Report a space's health transitions, with how many checks failed in a row
#
# Try it:  knot run scripts/sinks/report_health.py --event space.unhealthy \
#              --data '{"space_name": "web", "previous": "healthy", "current": "unhealthy",
#                       "consecutive_failures": 2, "checked_at": "2026-01-01T00:00:00Z"}'
import knot.event

name = knot.event.get_string("space_name") or knot.event.space()["name"]
checked_at = knot.event.get_string("checked_at")

if knot.event.type() == "space.unhealthy":
    failures = knot.event.get_int("consecutive_failures", 0)
    print(f"{name} is unhealthy: {failures} failed checks in a row (at {checked_at})")
elif knot.event.get_string("previous") == "unhealthy":
    print(f"{name} is healthy again (at {checked_at})")
else:
    print(f"{name} is healthy (at {checked_at})")
