"""viz.explore: the interactive graph page, driven in headless Chromium and compared with the engine's numbers."""

import shutil

import numpy as np
import pytest
from browser import errors, open_page, screenshot, start_browser, stop_browser, wait

from tinygrad_attn import functional as F
from tinygrad_attn.nn.model import make_model
from tinygrad_attn.rng import manual_seed
from tinygrad_attn.scalar import Value
from tinygrad_attn.tensor import Tensor
from tinygrad_attn.viz import explore, retain_grads
from tinygrad_attn.viz._layout import walk

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def seq2seq_loss():
    """make_model(N=2) on a 7-token source, its loss after backward, every op's gradient kept."""
    manual_seed(0)
    model = make_model(11, 11, N=2, d_model=32, d_ff=64, h=4, dropout=0.0)
    src, tgt = Tensor(np.array([[1, 4, 3, 7, 2, 9, 5]])), Tensor(np.array([[1, 2, 3, 4, 5, 6]]))
    logits = model(src, tgt)
    loss = F.cross_entropy(logits.reshape(-1, 11), Tensor(np.array([2, 3, 4, 5, 6, 7])))
    retain_grads(loss).backward(retain_graph=True)
    return model, loss


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    model, loss = seq2seq_loss()
    path = tmp_path_factory.mktemp("explore") / "graph.html"
    explore(loss, model=model, path=path)
    driver = start_browser()
    yield driver, path, model, loss
    stop_browser(driver)


@pytest.fixture
def fresh(page):
    driver, path, model, loss = page
    open_page(driver, path)
    return driver, model, loss


def drawn(driver):
    """[(data-node or data-module, data-op, data-path)] of the drawn nodes and boxes."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#view g.node')].map(g => "
        "[g.dataset.module || g.dataset.node, g.dataset.op, g.dataset.path])"
    )


def click(driver, css):
    el = driver.find_element("css selector", css)
    el.click()
    return el


def field(driver, name):
    return driver.find_element("css selector", f'#inspector [data-field="{name}"]').text


def test_page_opens_at_depth_one_without_errors(fresh):
    driver, model, _ = fresh
    assert errors(driver) == []
    shown = drawn(driver)
    boxes = {m for m, op, _ in shown if op == "module"}
    assert boxes == {"src_embed", "tgt_embed", "positional", "positional#2", "transformer.encoder",
                     "transformer.decoder", "generator"}
    assert all(path is not None and op for _, op, path in shown)  # every node carries data-op and data-path
    assert "cross_entropy" in {op for _, op, _ in shown}
    screenshot(driver, "explore_depth1")


def test_clicking_a_box_opens_it_and_its_frame_closes_it(fresh):
    driver, _, _ = fresh
    before = len(drawn(driver))
    click(driver, 'g.node[data-module="transformer.encoder"]')
    wait(driver, "return !!document.querySelector('g.cluster[data-module=\"transformer.encoder\"]')")
    inside = drawn(driver)
    assert len(inside) > before
    layers = [m for m, op, _ in inside if op == "module" and m.startswith("transformer.encoder.layers")]
    assert layers == ["transformer.encoder.layers.0"]  # both layers folded into one box until opened
    assert "x2" in driver.find_element("css selector", 'g.node[data-module="transformer.encoder.layers.0"]').text
    assert "transformer.decoder" in {m for m, _, _ in inside}  # the rest is kept
    click(driver, 'g.node[data-module="transformer.encoder.layers.0"]')
    wait(driver, "return !!document.querySelector('g.cluster[data-module=\"transformer.encoder.layers.0\"]')")
    children = {m for m, op, _ in drawn(driver) if op == "module"}
    assert {"transformer.encoder.layers.0.self_attn", "transformer.encoder.layers.0.feed_forward",
            "transformer.encoder.layers.1"} <= children
    crumbs = driver.find_element("id", "crumbs").text
    assert "transformer.encoder (TransformerEncoder)" in crumbs and "layers.0 (TransformerEncoderLayer)" in crumbs
    screenshot(driver, "explore_layer_open")
    click(driver, 'g.cluster[data-module="transformer.encoder.layers.0"] > text')
    wait(driver, "return !document.querySelector('g.cluster[data-module=\"transformer.encoder.layers.0\"]')")
    assert [m for m, op, _ in drawn(driver) if m.startswith("transformer.encoder.layers")] == [
        "transformer.encoder.layers.0"
    ]
    assert errors(driver) == []


def stats(a):
    a = np.asarray(a, dtype=np.float64)
    return a.min(), a.mean(), a.max()


def shown_stats(driver, prefix):
    return [float(field(driver, f"{prefix}-{s}")) for s in ("min", "mean", "max")]


@pytest.mark.parametrize(
    "search, find",
    [
        ("transformer.encoder.layers.0.self_attn.w_q.weight", None),  # a parameter, found by name
        ("encoder.layers.0.self_attn", "self_attention"),  # an op inside a module found by its path
    ],
)
def test_inspector_shows_the_tensors_shape_and_gradient(fresh, search, find):
    driver, model, loss = fresh
    box = driver.find_element("id", "search")
    box.send_keys(search + "\n")
    if find is None:
        wait(driver, f"return document.querySelector('#inspector h2')?.textContent === '{search}'")
        tensor = dict(model.named_parameters())[search]
    else:
        css = f'g.node[data-op="{find}"]'
        wait(driver, f"return !!document.querySelector('{css}')")
        node = int(click(driver, css).get_attribute("data-node"))
        tensor = walk(loss)[node]
        assert tensor._op == find
        attn = model.transformer.encoder.layers[0].self_attn
        assert any(m is attn for m in tensor._scope)
        assert field(driver, "doc").startswith(f"ops.{find}: ")
    assert field(driver, "shape") == str(tuple(tensor.shape))
    assert field(driver, "dtype") == str(tensor.dtype)
    np.testing.assert_allclose(shown_stats(driver, "data"), stats(tensor.data), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(shown_stats(driver, "grad"), stats(tensor.grad.data), rtol=1e-3, atol=1e-9)
    screenshot(driver, f"explore_inspect_{find or 'param'}")
    assert errors(driver) == []


@pytest.mark.parametrize("name, ids", [("src", [1, 4, 3, 7, 2, 9, 5]), ("tgt", [1, 2, 3, 4, 5, 6])])
def test_token_ids_are_input_nodes_that_show_their_ids(fresh, name, ids):
    driver, _, loss = fresh
    node = next(i for i, t in enumerate(walk(loss)) if t.name == name)
    first_line = driver.find_element("css selector", f'#view g.node[data-node="{node}"]').text.split("\n")[0]
    assert first_line == name  # drawn in the picture the page opens with
    driver.find_element("id", "search").send_keys(name + "\n")
    wait(driver, f"return document.querySelector('#inspector h2')?.textContent === '{name}'")
    assert [field(driver, f) for f in ("kind", "module", "shape", "dtype")] == ["input", "(top level)",
                                                                             f"(1, {len(ids)})", "int64"]
    assert field(driver, "data-values") == str(ids)
    assert field(driver, "grad") == "none kept"
    assert errors(driver) == []


FORMATTED = [  # fmt(): four significant digits, except whole numbers such as token ids, shown exactly
    (13523, "13523"), (250001, "250001"), (0, "0"), (-3, "-3"),
    (4.42857, "4.429"), (0.5, "0.5"), (123456.7, "1.235e+5"), (1.5e-5, "1.500e-5"),
]


def test_numbers_are_shown_to_four_digits_and_whole_numbers_exactly(fresh):
    driver, _, _ = fresh
    assert [driver.execute_script("return fmt(arguments[0])", x) for x, _ in FORMATTED] == [s for _, s in FORMATTED]


def set_step(driver, k, mode="backward"):
    driver.execute_script(
        "const m = document.getElementById('mode'); if (m.value !== arguments[1]) { m.value = arguments[1];"
        " m.dispatchEvent(new Event('change')); } const s = document.getElementById('step');"
        " s.value = arguments[0]; s.dispatchEvent(new Event('input'));", k, mode)
    return driver.execute_script(
        "return [...document.querySelectorAll('#view g.node.lit')].map(g => [g.dataset.node, g.dataset.module])"
    )


def test_backward_slider_lights_the_engines_order(fresh):
    driver, model, loss = fresh
    order = list(reversed(loss._topo()))  # the order Tensor.backward visits the nodes
    nodes, modules = walk(loss), dict(model.named_modules())
    checked = 0
    for k in range(1, 12):
        lit = set_step(driver, k)
        assert len(lit) == 1, f"step {k} lit {lit}"
        node, module = lit[0]
        if node is not None:
            assert nodes[int(node)] is order[k - 1]
            checked += 1
        else:  # inside a closed module: its box is lit
            assert any(m is modules[module.split("#")[0]] for m in order[k - 1]._scope)
    assert checked >= 2  # the loss and the reshape under it; the rest is inside the decoder and generator boxes
    # step 2 is the reshape under cross_entropy: the gradient along their edge is all of reshape's gradient
    set_step(driver, 1)
    rows = driver.find_elements("css selector", "#flow td")
    assert driver.find_elements("css selector", "#view g.edge.flow")
    reshape = order[1]
    shown = [float(x) for x in rows[0].text.split()[1::2]]
    np.testing.assert_allclose(shown, stats(reshape.grad.data), rtol=1e-3, atol=1e-9)
    screenshot(driver, "explore_backward_step")
    lit = set_step(driver, 10**6, "forward")  # the range input clamps to its last step
    assert len(lit) == 1 and nodes[int(lit[0][0])] is loss  # the forward pass ends at the loss
    assert errors(driver) == []


@needs_dot
def test_values_graph_inspector(tmp_path):
    x, w = Value(2.0, label="x"), Value(-3.0, label="w")
    out = (x * w).tanh()
    out.backward()
    explore(out, path=tmp_path / "v.html")
    driver = start_browser()
    try:
        open_page(driver, tmp_path / "v.html")
        driver.find_element("id", "search").send_keys("w\n")
        wait(driver, "return document.querySelector('#inspector h2')?.textContent === 'w'")
        assert float(field(driver, "grad-values").strip("[]")) == pytest.approx(w.grad, rel=1e-3)
        assert errors(driver) == []
    finally:
        stop_browser(driver)


def test_without_dot_the_page_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    import tinygrad_attn.viz.explorer as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    page = explore(Value(1.0) * 2, path=tmp_path / "x.html")
    assert "apt-get install graphviz" in page.html and "`dot` program was not found" in page.html
    assert "apt-get install graphviz" in capsys.readouterr().err
    assert "<iframe srcdoc=" in page._repr_html_()


@needs_dot
def test_cli_writes_the_page_when_the_output_ends_in_html(tmp_path):
    import json
    import re
    import subprocess
    import sys

    out = tmp_path / "mlp.html"
    subprocess.run([sys.executable, "-m", "tinygrad_attn", "graph", "mlp", "-o", str(out)], check=True,
                   capture_output=True, text=True)
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', out.read_text()).group(1))
    assert set(data["frames"]) == {"root", "fc1", "fc2"}  # the MLP's modules, each a state of the page
    assert set(data["states"]) == {"root", "fc1", "fc2"}
    assert not (tmp_path / "mlp.svg").exists() and not (tmp_path / "mlp.dot").exists()


def test_the_notebook_iframe_runs_the_page(page, tmp_path):
    driver, path, model, loss = page
    host = tmp_path / "notebook.html"  # what Jupyter puts in an output cell: the _repr_html_ text
    host.write_text("<!doctype html><html><body>" + explore(loss, model=model)._repr_html_() + "</body></html>")
    driver.get(host.resolve().as_uri())
    driver.switch_to.frame(driver.find_element("css selector", "iframe"))
    try:
        wait(driver, "return document.body.dataset.ready === '1'")
        assert driver.find_elements("css selector", 'g.node[data-module="transformer.encoder"]')
    finally:
        driver.switch_to.default_content()
    assert errors(driver) == []


def test_zoom_pan_and_fit(fresh):
    from selenium.webdriver.common.action_chains import ActionChains

    driver, _, _ = fresh
    box = "return document.querySelector('#view svg').getAttribute('viewBox').split(' ').map(Number)"
    full = driver.execute_script(box)
    driver.execute_script(
        "const v = document.getElementById('view').getBoundingClientRect();"
        "document.getElementById('view').dispatchEvent(new WheelEvent('wheel', {deltaY: -400, bubbles: true,"
        " cancelable: true, clientX: v.left + v.width / 2, clientY: v.top + v.height / 2}))")
    zoomed = driver.execute_script(box)
    assert zoomed[2] < full[2] / 1.5 and zoomed[3] < full[3] / 1.5  # scrolling up zooms in
    view = driver.find_element("id", "view")
    ActionChains(driver).move_to_element_with_offset(view, -300, 200).click_and_hold().move_by_offset(100, 0)\
        .release().perform()
    panned = driver.execute_script(box)
    assert panned[0] < zoomed[0] and panned[1] == pytest.approx(zoomed[1]) and panned[2] == zoomed[2]
    driver.find_element("id", "fit").click()
    assert driver.execute_script(box) == full
