"""The Sky Event API: event signal URLs cleaned into events, and the channels (ecis) they use.

esl.py       an ESL and its body, parsed and cleaned into one event (no I/O)
channels.py  channels: who owns an eci and which event types it lets in
"""
