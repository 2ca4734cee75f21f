"""The collector: an ASGI service that receives signed partner webhooks and Segment-compatible tracking
calls, and answers 200 only once their events are staged and their bodies archived."""
