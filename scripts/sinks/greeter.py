# events: custom.hello.greet
# description: Answer a Sky event (/sky/event/<eci>/<eid>/hello/greet?name=Ada) with a directive
#
# Try it:  knot run scripts/sinks/greeter.py --event custom.hello.greet --data '{"name": "Ada"}'
import knot.event

name = knot.event.get_string("name", "world").strip() or "world"
knot.event.directive("say", {"message": f"Hello, {name}!", "lang": "en"})
print(f"greeted {name}")
