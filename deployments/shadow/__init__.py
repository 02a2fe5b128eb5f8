"""The router's own labels: shadow answers after the user's answer, label records, and their writer.

`setup.LearningLoop` wires them (and the calibration reloader) into an ingress replica;
`OpenAIService` asks its `ShadowRunner` after each non-streamed `auto` answer.
"""
