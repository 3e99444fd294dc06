"""Screenshots of the interactive pages for docs/visualisation.md, taken in headless Chromium.

    python docs/make_screenshots.py     # writes docs/figures/explore.png and docs/figures/attention_view.png

Needs Graphviz's dot, selenium and Debian's chromium + chromedriver (as the page tests do).
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tinygrad_attn import functional as F
from tinygrad_attn.nn import spelled_out
from tinygrad_attn.nn.model import make_model
from tinygrad_attn.rng import manual_seed
from tinygrad_attn.tensor import Tensor, no_grad
from tinygrad_attn.viz import attention_view, explore, retain_grads

FIGURES = Path(__file__).parent / "figures"


def browser(width, height):
    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--window-size={width},{height}",
                f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def ready(driver, script):
    for _ in range(200):
        if driver.execute_script(script):
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {script}")


def graph_page(folder):
    manual_seed(0)
    model = make_model(11, 11, N=2, d_model=32, d_ff=64, h=4, dropout=0.0)
    with spelled_out():  # every step of attention, the masked_softmax to click among them
        logits = model(Tensor(np.array([[1, 4, 3, 7, 2, 9, 5]])), Tensor(np.array([[1, 2, 3, 4, 5, 6]])))
    loss = F.cross_entropy(logits.reshape(-1, 11), Tensor(np.array([2, 3, 4, 5, 6, 7])))
    retain_grads(loss).backward(retain_graph=True)
    path = explore(loss, model=model, title="make_model(N=2): cross-entropy loss").save(folder / "graph.html")
    driver = browser(1200, 720)
    driver.get(path.resolve().as_uri())
    ready(driver, "return document.body.dataset.ready === '1'")
    driver.find_element("id", "search").send_keys("encoder.layers.0.self_attn\n")
    ready(driver, "return !!document.querySelector('g.node[data-op=\"masked_softmax\"]')")
    driver.find_element("css selector", 'g.node[data-op="masked_softmax"]').click()
    time.sleep(0.3)
    driver.save_screenshot(str(FIGURES / "explore.png"))
    driver.quit()


def attention_page(folder):
    from tinygrad_attn import pretrained

    model = pretrained.load("all-MiniLM-L6-v2")
    batch = model.tokenize(["The animal didn't cross the street because it was too tired."])
    with no_grad():
        model(batch["input_ids"], attention_mask=batch["attention_mask"])
    path = attention_view(model, batch["tokens"], title="all-MiniLM-L6-v2").save(folder / "attention.html")
    driver = browser(1200, 640)
    driver.get(path.resolve().as_uri())
    ready(driver, "return document.body.dataset.ready === '1'")
    driver.execute_script("const s = document.getElementById('layer'); s.value = '2';"
                          " s.dispatchEvent(new Event('change'))")
    it = batch["tokens"][0].index("it")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(driver.find_element("css selector", f'#head text.q[data-i="{it}"]')).perform()
    time.sleep(0.3)
    driver.save_screenshot(str(FIGURES / "attention_view.png"))
    driver.quit()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        graph_page(Path(tmp))
        attention_page(Path(tmp))
    print("wrote", FIGURES / "explore.png", "and", FIGURES / "attention_view.png")
