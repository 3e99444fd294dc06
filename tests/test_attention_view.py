"""viz.attention_view in headless Chromium: the lines a hovered token shows are the model's attn_weights."""

import numpy as np
import pytest
from browser import errors, open_page, screenshot, start_browser, stop_browser

from tinygrad_attn.nn.model import make_model
from tinygrad_attn.rng import manual_seed
from tinygrad_attn.tensor import Tensor, no_grad
from tinygrad_attn.viz import attention_view


@pytest.fixture(scope="module")
def driver():
    d = start_browser()
    yield d
    stop_browser(d)


def seq2seq():
    manual_seed(0)
    model = make_model(11, 11, N=2, d_model=32, d_ff=64, h=4, dropout=0.0)
    with no_grad():
        model(Tensor(np.array([[1, 4, 3, 7, 2]])), Tensor(np.array([[1, 2, 3, 4]])))
    return model, list("abcde"), list("wxyz")


def bert():
    try:
        from tinygrad_attn import pretrained

        model = pretrained.load("all-MiniLM-L6-v2")
    except Exception as e:  # noqa: BLE001 (any reason the model cannot load is a reason to skip)
        pytest.skip(f"all-MiniLM-L6-v2 is not available: {e}")
    batch = model.tokenize(["The cat sat on the mat.", "A dog"])
    with no_grad():
        model(batch["input_ids"], attention_mask=batch["attention_mask"])
    return model, batch["tokens"], None


def choose(driver, select, value):
    driver.execute_script(
        f"const s = document.getElementById('{select}'); s.value = arguments[0]; s.dispatchEvent(new Event('change'))",
        str(value),
    )


def hover(driver, side, i):
    from selenium.webdriver.common.action_chains import ActionChains

    el = driver.find_element("css selector", f'#head text.{side}[data-i="{i}"]')
    ActionChains(driver).move_to_element(el).perform()


def visible_lines(driver):
    """[(head, query, key, data-w, stroke-opacity)] of the lines on screen."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#lines line')].filter(l => getComputedStyle(l).display !== 'none')"
        ".map(l => [+l.dataset.head, +l.dataset.q, +l.dataset.k, +l.dataset.w, +l.getAttribute('stroke-opacity')])"
    )


@pytest.mark.parametrize(
    "make, batch, block, module, query",
    [
        (seq2seq, 0, 1, "transformer.decoder.layers.1.self_attn", 1),  # causal: keys after 1 are masked
        (seq2seq, 0, 2, "transformer.decoder.layers.0.cross_attn", 3),
        (bert, 1, 0, "encoder.layers.3.self_attn", 2),  # "dog" in the padded second sentence
    ],
)
def test_hovered_token_shows_its_row_of_attn_weights(driver, tmp_path, make, batch, block, module, query):
    model, src, tgt = make()
    weights = dict(model.named_modules())[module].attn_weights[batch]  # (h, T, S)
    path = attention_view(model, src, tgt, batch=batch, path=tmp_path / "a.html").save(tmp_path / "a.html")
    open_page(driver, path)
    layer = int(module.split(".")[-2])
    choose(driver, "block", block)
    choose(driver, "layer", layer)
    hover(driver, "q", query)
    lines = visible_lines(driver)
    assert {q for _, q, _, _, _ in lines} == {query}
    h, _, S = weights.shape
    shown = np.zeros((h, S))
    for head, _, k, w, opacity in lines:
        shown[head, k] = w
        assert opacity == pytest.approx(w, rel=1e-6)  # what the eye sees is the weight
    np.testing.assert_allclose(shown, weights[:, query, :], rtol=1e-4, atol=1e-9)
    masked = driver.execute_script(
        "return [...document.querySelectorAll('#head text.k.masked')].map(t => +t.dataset.i)"
    )
    assert masked == [k for k in range(S) if np.all(weights[:, query, k] == 0)]
    screenshot(driver, f"attention_{module.replace('.', '_')}")
    assert errors(driver) == []


def test_grid_cell_opens_that_layer_and_head(driver, tmp_path):
    model, src, tgt = seq2seq()
    path = attention_view(model, src, tgt, path=tmp_path / "a.html").save(tmp_path / "a.html")
    open_page(driver, path)
    cells = driver.find_elements("css selector", "#grid svg.cell")
    assert len(cells) == 2 * 4  # layers x heads of the encoder block
    driver.find_element("css selector", '#grid svg.cell[data-layer="1"][data-head="2"]').click()
    assert driver.find_element("id", "layer").get_attribute("value") == "1"
    on = driver.execute_script("return [...document.querySelectorAll('#heads button.on')].map(b => +b.dataset.head)")
    assert on == [2]
    heads = {h for h, *_ in visible_lines(driver)}
    assert heads == {2}
    choose(driver, "block", 1)  # decoder self-attention: the causal mask's zeros are the grey cells
    zeros = sum(int((layer.self_attn.attn_weights[0] == 0).sum()) for layer in model.transformer.decoder.layers)
    assert zeros == 2 * 4 * (4 * 3 // 2)  # 2 layers x 4 heads x the 6 future positions of 4 queries
    assert len(driver.find_elements("css selector", "#grid rect.masked")) == zeros
    assert errors(driver) == []


def test_tokens_must_match_the_weights():
    model, src, tgt = seq2seq()
    with pytest.raises(ValueError, match="self_attn has 5 queries but 4 tokens were given"):
        attention_view(model, src[:4], tgt)


def test_cli_writes_the_view_when_the_output_ends_in_html(tmp_path):
    import json
    import re
    import subprocess
    import sys

    bert()  # skips where the pretrained model is missing
    out = tmp_path / "minilm.html"
    subprocess.run([sys.executable, "-m", "tinygrad_attn", "attention", "--pretrained", "all-MiniLM-L6-v2",
                    "The cat sat.", "-o", str(out)], check=True, capture_output=True, text=True)
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', out.read_text()).group(1))
    (block,) = data["blocks"]
    assert block["rows"] == block["cols"] == ["[CLS]", "the", "cat", "sat", ".", "[SEP]"]
    assert len(block["layers"]) == 6 and len(block["layers"][0]["weights"]) == 12  # 6 layers x 12 heads
