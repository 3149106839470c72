"""GraphiQL opens on example tabs that run as pasted, with text memories only."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from graph.app import create_app
from graph.http.graphiql import EXAMPLE_TABS
from tests.conftest import make_settings
from tests.helpers import gql


def test_the_page_opens_on_the_example_tabs(client: TestClient) -> None:
    page = client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "defaultTabs:" in page.text
    for tab in EXAMPLE_TABS:
        first_line = tab["query"].splitlines()[1]
        assert first_line.replace('"', '\\"') in page.text


def test_every_example_runs_as_pasted_on_the_default_settings(tmp_path: Path) -> None:
    """The default collection's 384 dimensions, no embedder: the examples need neither."""
    settings = make_settings(tmp_path, vector_size=384)
    with TestClient(create_app(settings)) as client:
        answers = [gql(client, tab["query"]).data for tab in EXAMPLE_TABS]
    remembered, recalled, health = answers
    assert len(remembered["remember"]["ids"]) == 2
    assert [m["text"] for m in recalled["recall"]] == ["Ada likes green tea in the morning"]
    assert health["health"]["status"] == "OK"
