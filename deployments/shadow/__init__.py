"""The router's own labels: shadow answers after the user's answer, label records, and their writer.

`setup.LearningLoop` wires them (and the calibration reloader) into an ingress replica;
`OpenAIService` asks its `ShadowRunner` after each non-streamed `auto` answer and, for a streamed
one, before its first event (`stream.StreamTap` then collects the answer as it goes out).
"""
