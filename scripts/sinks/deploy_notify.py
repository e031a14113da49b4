# events: custom.myapp.deployed
# description: Knot's deploy notifier: announce the version and commit, and where it came from
#
# Try it:  knot run scripts/sinks/deploy_notify.py --event custom.myapp.deployed \
#              --data '{"version": "1.4.2", "commit": "9f1c2e7d"}' --space web
import knot.event

version = knot.event.get_string("version", "unknown")
commit = knot.event.get_string("commit", "")[:7] or "no commit"
space = knot.event.space()
origin = space["name"] or "outside any space"

print(f"Deploying {version} ({commit}) from {origin}")
