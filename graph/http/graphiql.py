"""The GraphiQL page: Strawberry's, opening on example tabs that run as pasted.

The examples use text memories only, so a newcomer's first remember and recall need no
vectors and no VECTOR_SIZE change. GraphiQL shows them when the browser has no tabs of
its own saved yet.
"""

from __future__ import annotations

import json

from strawberry.http.ides import get_graphql_ide_html

EXAMPLE_TABS: list[dict[str, str]] = [
    {
        "query": (
            "# Store memories: text, with optional metadata and expiry.\n"
            "mutation Remember {\n"
            "  remember(memories: [\n"
            '    {text: "Ada likes green tea in the morning", metadata: {user: "ada"}}\n'
            '    {text: "Ada flies to Paris on Friday", metadata: {user: "ada"}, '
            "ttlSeconds: 604800}\n"
            "  ]) { ids }\n"
            "}\n"
        )
    },
    {
        "query": (
            "# Recall by keywords: no embedding model needed.\n"
            "query Recall {\n"
            '  recall(text: "green tea", limit: 5,\n'
            '         filter: {must: [{key: "user", match: {value: "ada"}}]}) {\n'
            "    id text score metadata createdAt\n"
            "  }\n"
            "}\n"
        )
    },
    {"query": "query Health {\n  health { status version backend }\n}\n"},
]

_MARKER = "defaultEditorToolsVisibility: true,"


def graphiql_page() -> str:
    html = get_graphql_ide_html("graphiql")
    # JSON is valid JavaScript; "<" is escaped so no text can close the script element.
    tabs = json.dumps(EXAMPLE_TABS).replace("<", "\\u003c")
    return html.replace(_MARKER, f"{_MARKER}\n          defaultTabs: {tabs},", 1)
