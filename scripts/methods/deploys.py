# A method script: count deploys per space, and answer questions about them.
#
# It runs in a worker of its own that keeps `deploys` between calls. `record` is subscribed
# to custom.deploy.* (its params come from the json-rpc sink deploy_params in knot.toml);
# `count` and `summary` are called directly. With `knot serve` running:
#
#   knot event deploy.finished '{"space": "web", "version": "1.4.2"}'
#   knot call deploys.count '{"space": "web"}'
#   knot call deploys.summary
import knot.event
import knot.methods

MILESTONE = 10

deploys = {}  # space name → {"count": deploys seen, "last": the last version}


@knot.methods.method(events=["custom.deploy.*"], event_sinks=["deploy_params"])
def record(params):
    space = params.get("space") or "(no space)"
    entry = deploys.setdefault(space, {"count": 0, "last": ""})
    entry["count"] = entry["count"] + 1
    entry["last"] = params.get("version") or "unknown"
    print(f"{space}: deploy #{entry['count']} ({entry['last']})")
    if entry["count"] % MILESTONE == 0:
        knot.event.emit("deploys.milestone", {"space": space, "count": entry["count"]})
    return entry


@knot.methods.method(params=["space"])
def count(params):
    entry = deploys.get(params["space"])
    return entry["count"] if entry else 0


@knot.methods.method
def summary(params):
    total = sum(entry["count"] for entry in deploys.values())
    busiest = max(deploys, key=lambda name: deploys[name]["count"]) if deploys else ""
    return {"deploys": total, "spaces": len(deploys), "busiest": busiest, "by_space": deploys}
