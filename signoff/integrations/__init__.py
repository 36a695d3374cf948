"""Adapters that put signoff inside agent frameworks. Each imports its framework only when imported itself:

- ``signoff.integrations.mcp_server``: ``signoff mcp``, an MCP server (``pip install 'signoff[mcp]'``)
- ``signoff.integrations.openai_agents``: the OpenAI Agents SDK (``pip install 'signoff[openai-agents]'``)
- ``signoff.integrations.langgraph``: LangGraph (``pip install 'signoff[langgraph]'``)
"""
