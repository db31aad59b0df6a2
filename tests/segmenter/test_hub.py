"""The hub, asked once and quickly: reachability, the cache, and telling paths from hub ids."""

import socket

import pytest

from segmenter import hub


@pytest.fixture
def probe(monkeypatch):
    """hub_offline() asked afresh, with HF_HUB_OFFLINE unset and the endpoint given."""
    import huggingface_hub.constants

    def ask(endpoint):
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
        hub.hub_offline.cache_clear()
        return hub.hub_offline()

    yield ask
    hub.hub_offline.cache_clear()


def test_an_unreachable_hub_is_offline_and_a_listening_one_is_not(probe):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once closed
    assert probe(f"http://127.0.0.1:{port}") is True
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert probe(f"http://127.0.0.1:{server.getsockname()[1]}") is False


def test_hf_hub_offline_means_offline_without_asking(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("the network was asked"))
    hub.hub_offline.cache_clear()
    try:
        assert hub.hub_offline() is True
    finally:
        hub.hub_offline.cache_clear()


@pytest.mark.parametrize("value, is_path", [
    ("./tiny/florence2", True), ("../models/x", True), ("/abs/dir", True), ("~/models/sam2.pt", True),
    ("tiny/sam2.pt", True), ("a/b/c", True), ("C:\\\\models\\\\x", True),
    ("florence-community/Florence-2-large", False), ("facebook/sam2.1-hiera-large", False),
    ("sam2.1_hiera_large", False), ("sam2_hiera_l.yaml", False),
])
def test_paths_are_told_from_hub_ids(value, is_path):
    assert hub.looks_like_path(value) is is_path


def test_the_cache_is_read_without_the_network(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert hub.cached_file("org/model", "config.json") is None
    snapshot = tmp_path / "models--org--model" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--model" / "refs").mkdir()
    (tmp_path / "models--org--model" / "refs" / "main").write_text("0" * 40)
    assert hub.cached_file("org/model", "config.json") == snapshot / "config.json"
    assert hub.cached_file("not a repo id!", "config.json") is None
