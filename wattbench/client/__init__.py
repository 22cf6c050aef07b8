"""How one request is sent and timed: transports (the service's /chat, an OpenAI-compatible server), the service child."""
