"""signoff server: settings, domain rules, service, HTTP API, Slack wiring, scheduler and CLI."""
