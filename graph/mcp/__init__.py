"""The MCP server: the tools remember, recall and forget over the memory service."""
