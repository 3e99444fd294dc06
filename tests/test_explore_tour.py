"""The tour's index.html shows both interactive pages (graph.html, attention.html) beside the static pictures."""

import shutil

import pytest
from browser import errors, open_page, screenshot, start_browser, stop_browser, wait

from tinygrad_attn.cli.tour import tour


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_tour_index_embeds_both_pages(tmp_path):
    pytest.importorskip("matplotlib")
    index = tour(tmp_path, task="copy", steps=5, progress=False)
    text = index.read_text()
    assert "<iframe src='graph.html'" in text and "<iframe src='attention.html'" in text
    assert "<img src='graph_depth2.svg'" in text  # the static pictures stay, as fallbacks
    driver = start_browser()
    try:
        driver.get(index.resolve().as_uri())
        frames = driver.find_elements("css selector", "iframe")
        assert [f.get_attribute("src").rsplit("/", 1)[1] for f in frames] == ["graph.html", "attention.html"]
        for frame, ready in zip(frames, ("#view g.node", "#lines line")):
            driver.switch_to.frame(frame)
            wait(driver, f"return document.body.dataset.ready === '1' && !!document.querySelector('{ready}')")
            driver.switch_to.default_content()
        screenshot(driver, "tour_index")
        assert errors(driver) == []
        open_page(driver, tmp_path / "graph.html")  # and each works on its own
        assert driver.find_elements("css selector", 'g.node[data-module="transformer.encoder"]')
    finally:
        stop_browser(driver)
