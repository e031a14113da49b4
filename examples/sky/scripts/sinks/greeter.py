# events: custom.greet.*
# description: Answers Sky events with a greeting directive.
import knot.event

name = knot.event.get_string("name", "world")
knot.event.directive("say", {"text": f"Hello, {name}!", "event": knot.event.type()})
print(f"greeted {name}")
