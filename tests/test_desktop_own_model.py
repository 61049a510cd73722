"""The wizard's "Your own model" through the window (desktop-own-model/ screenshots): the real release
app under Xvfb, driven through tauri-driver, on a private D-Bus session with gnome-keyring.

A user brings the bundled scikit-learn gradient-boosted-trees classifier as if it were their own
ONNX file: the card builder first refuses a graph it cannot serve as a classifier (the autoencoder)
with a sentence naming the output it found; then it shows what it found in the classifier (task,
features, classes, decision threshold, held-out accuracy) before anything is built; the image is
built into this machine's Docker engine with a tag made of the model's name, version and content
hash; the sandbox deploys it; verify shows a classifier; every held-out row's prediction from the
container agrees with ONNX Runtime run here; the dashboard's model layer shows the classifier's
tiles, the predicted classes over time and against their baseline, and accuracy from the labels the
replayed traffic posts back. A row with a missing cell is refused alone (per-row policy) while the
rest of its request is scored; with the replay's missing cells switched on, the data-quality chart
shows missing cells per minute beside the rows still scored.

The multi-class classifier (wine, logistic regression) and the regressor (diabetes) take the same
road: inspected, built, deployed to the sandbox, every held-out prediction compared with ONNX
Runtime, and their own model layer (top-class probability with accuracy, or the prediction with MAE
from the replayed labels).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from support import tasks
from support.desktop import Console, Page

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
MODELS = ROOT / "inference-image/model"


@pytest.fixture()
def console(tmp_path, display, binaries, sandbox_images):
    c = Console(tmp_path, display, binaries)
    yield c
    c.close()
    # The image built for this run (its tag is content-addressed: a later run rebuilds it).
    tags = subprocess.run(["docker", "image", "ls", "--filter", "label=mlops.own-model=1", "--format", "{{.Repository}}:{{.Tag}}"],
                          capture_output=True, text=True).stdout.split()
    if tags:
        subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def to_deploy_step(page: Page) -> None:
    """Credentials, platform (the sandbox), provision and GitHub (not needed) to the deploy step."""
    page.booted()
    page.click("#wiz-next")  # credentials: the sandbox needs none
    page.visible("#advisor", what="platform step")
    page.click('input[name="need"][value="try"]')
    page.wait_text("#platform-note", "Ready", what="sandbox readiness")
    page.click("#wiz-next")
    page.wait_text("#provision-body", "Nothing to provision", what="provision note")
    page.click("#wiz-next")
    page.wait_text("#github-body", "not needed", what="GitHub note")
    page.click("#wiz-next")
    page.visible("#own-model", what="the own-model section")
    page.click("#own-model summary")
    page.visible("#own-form", what="the own-model form")


def inspect(page: Page, name: str, task: str, missing: str = "reject") -> str:
    """Fills the form for the example `name` as the user's own files and inspects it; returns the
    card it shows (text)."""
    src = MODELS / name
    page.select('#own-form [name="task"]', task)
    page.fill('#own-form [name="model"]', str(src / "model.onnx"))
    page.fill('#own-form [name="reference"]', str(src / "reference.csv"))
    page.fill('#own-form [name="holdout"]', str(src / "holdout.csv"))
    page.fill('#own-form [name="name"]', name)
    page.fill('#own-form [name="version"]', "1.0.0")
    page.select('#own-form [name="missing"]', missing)
    page.click("#own-inspect")
    page.visible("#own-card", 90, f"the inspection of {name}")
    return page.text("#own-card")


def build_and_deploy(page: Page, name: str, task: str) -> str:
    """Builds the inspected model's image, deploys it to the sandbox and verifies it; returns its tag."""
    tag = page.text('#own-card dd[data-field="Image tag"]')
    assert tag.startswith(f"{name}-1.0.0-") and len(tag) == len(f"{name}-1.0.0-") + 12, tag
    page.click("#own-build")
    page.wait(lambda drv: page.find("#wizard-tag").get_attribute("value") == tag, 240, f"the {name} image selected")
    inspected = subprocess.run(["docker", "image", "inspect", f"mlops-sandbox/inference:{tag}"], capture_output=True, text=True)
    assert inspected.returncode == 0, inspected.stderr
    labels = json.loads(inspected.stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == tag, labels
    page.click('#wizard-deploy button[type="submit"]')
    page.present("#wizard-progress .outcome", 240, "the deploy to finish")
    outcome = page.text("#wizard-progress .outcome")
    assert outcome.startswith("Deployed"), f"{outcome}\n{page.text('#wizard-progress .log')}"
    page.wait_text("#serving", f"serving {tag}", what=f"{name} serving")
    page.click("#wiz-next")
    page.wait_text("#verify-body", "Ready", 60, "verification")
    body = page.text("#verify-body")
    assert task in body and name in body and tag in body, body
    return tag


def predictions_match_onnxruntime(port: int, name: str) -> int:
    """Every held-out row through the container's /v1/predict, 50 per request, against ONNX Runtime
    run here on the committed model; returns the rows compared."""
    card = json.loads((MODELS / name / "model_card.json").read_text())
    _, rows, _ = tasks.read(MODELS / name / "holdout.csv")
    out = tasks.ort_outputs(tasks.session(MODELS / name / "model.onnx"), card, rows)
    for start in range(0, len(rows), 50):
        status, body = post(port, "/v1/predict", {"rows": rows[start:start + 50]})
        assert status == 200, body
        assert len(body["results"]) == len(rows[start:start + 50]) and "errors" not in body, body
        tasks.check_predictions(card, body, out, start)
    return len(rows)


def tile(d, label: str) -> str | None:
    return d.execute_script(
        "const t = [...document.querySelectorAll('#kpis div')].find(x => x.querySelector('dt').innerText === arguments[0]);"
        "return t ? t.querySelector('dd').innerText : null", label)


def model_chart_titles(d) -> list[str]:
    return d.execute_script("return [...document.querySelectorAll('.charts[data-layer=model] figcaption')].map(f => f.innerText)")


def test_own_classifier_from_the_wizard_to_its_dashboard(console: Console):
    from selenium.webdriver.common.by import By

    d = console.driver
    page = Page(d, ARTIFACTS / "desktop-own-model", console.display)
    wait, text, shot, click, fill = page.wait, page.text, page.shot, page.click, page.fill

    to_deploy_step(page)

    # Nothing picked: the form says what is missing, before asking the app.
    click("#own-inspect")
    page.wait_text("#own-error", "Pick the ONNX model", what="the missing model named")

    # A graph the card builder cannot serve as a classifier: a sentence naming what it found.
    ae = MODELS / "wbc-autoencoder"
    fill('#own-form [name="model"]', str(ae / "model.onnx"))
    fill('#own-form [name="reference"]', str(ae / "reference.csv"))
    click("#own-inspect")
    wait(lambda drv: "output" in text("#own-error"), 60, "the autoencoder refused as a classifier")
    refusal = text("#own-error")
    assert "panic" not in refusal.lower() and "inference card:" not in refusal, refusal
    assert page.find("#own-build").get_attribute("disabled") is not None, "nothing to build after a refusal"
    shot("refused")

    # The classifier: what the card builder found is shown before anything is built.
    gbt = MODELS / "wbc-gbt-classifier"
    card = inspect(page, "wbc-gbt-classifier", "classifier", missing="per-row")
    committed = json.loads((gbt / "model_card.json").read_text())
    assert "Binary classifier" in card, card
    assert ", ".join(committed["classifier"]["classes"]) in card, card
    assert f"{len(committed['features'])}:" in card, card
    assert "Decision threshold" in card and "0.5000" in card, card
    assert "per-row" in card, card
    assert "accuracy" in card, card
    shot("inspected")

    build_and_deploy(page, "wbc-gbt-classifier", "classifier")
    shot("verify")

    # The container's predictions are ONNX Runtime's; a row with a missing cell is refused alone.
    assert predictions_match_onnxruntime(console.port, "wbc-gbt-classifier") > 100
    features = [f["name"] for f in committed["features"]]
    _, rows, _ = tasks.read(gbt / "holdout.csv")
    holed = list(rows[0])
    holed[2] = None
    status, answer = post(console.port, "/v1/predict", {"rows": [rows[0], holed, rows[0]]})
    assert status == 200, answer
    assert [r["row"] for r in answer["results"]] == [0, 2] and len(answer["errors"]) == 1, answer
    assert answer["errors"][0]["row"] == 1 and features[2] in json.dumps(answer["errors"][0]), answer
    assert answer["results"][0]["label"] in committed["classifier"]["classes"], answer

    # --- the dashboard's model layer is the classifier's
    click("#wiz-next")
    page.visible("#view-dashboard", what="dashboard")
    page.wait_text("#task-label", "binary classifier", 30, "the task named on the model layer")
    wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "figure.chart img")) >= 10, 30, "the charts drawn")
    click("#traffic-toggle")
    page.wait_text("#traffic-state", "replaying normal,feedback", what="the classifier's scenarios replayed")
    page.present('figure[data-chart="predicted_classes"]', 30, "the predicted-classes chart")
    page.present('figure[data-chart="class_psi"]', 30, "the class drift chart")
    wait(lambda drv: len(page.rows_text("#class-table tbody tr")) == 2, 60, "a row per class")

    # Feedback arrives two seconds after each request: accuracy appears with the next refresh.
    wait(lambda drv: (tile(d, "Accuracy") or "–") != "–", 90, "accuracy from the labelled rows")
    assert tile(d, "Anomaly rate") is None and tile(d, "Positive rate") is not None
    titles = model_chart_titles(d)
    assert any("Positive-class probability" in t for t in titles), titles
    assert not any("Reconstruction" in t for t in titles), titles
    missing = d.execute_script(
        "return [...document.querySelectorAll('#drift-table tbody tr')].map(r => Number(r.children[5].innerText)).reduce((a, b) => a + b, 0)")
    assert missing >= 1, "the refused row's missing cell is counted by the data layer"
    shot("dashboard")

    # --- imperfect data keeps flowing: with missing cells switched on, the per-row policy refuses
    # only the rows that have one, and the data-quality chart shows missing cells beside the rows
    # still scored.
    click("#missing-switch")
    page.wait_text("#traffic-state", "missing", 30, "replay with missing cells")

    def quality():
        cap = d.execute_script(
            "const s = document.querySelector('figure[data-chart=\"data_quality\"] figcaption span');"
            "return s ? s.innerText : ''")
        m = re.match(r"([\d.]+)k? missing · ([\d.]+)k? scored", cap or "")
        return (float(m[1]), float(m[2])) if m else None

    wait(lambda drv: (q := quality()) is not None and q[0] > 0 and q[1] > 0, 150,
         "missing cells counted while rows are still scored")
    shot("missing-cells")
    click("#traffic-toggle")
    page.wait_text("#traffic-state", "no traffic", what="replay stopped")
    print(f"screenshots: {', '.join(page.shots)}; not captured: {page.missed or 'none'}")


@pytest.mark.parametrize("name,task,missing,found,label,score_title,metric", [
    ("wine-classifier", "classifier", "reject", "3-class classifier", "multi-class classifier", "Top-class probability",
     "Accuracy"),
    ("diabetes-regressor", "regressor", "impute-median", "regressor", "regressor", "Prediction", "MAE"),
])
def test_each_other_example_is_served_in_the_container_like_onnxruntime(console: Console, name, task, missing, found,
                                                                          label, score_title, metric):
    d = console.driver
    page = Page(d, ARTIFACTS / f"desktop-own-model-{name}", console.display)
    to_deploy_step(page)
    card = inspect(page, name, task, missing)
    assert found in page.text('#own-card dd[data-field="Found"]'), card
    assert page.text('#own-card dd[data-field="Task"]') == task, card
    shown = {"reject": "reject", "impute-median": "impute (median)"}[missing]
    assert page.text('#own-card dd[data-field="Missing values"]') == shown, card
    page.shot("inspected")
    build_and_deploy(page, name, task)
    compared = predictions_match_onnxruntime(console.port, name)
    assert compared >= 30, compared

    page.click("#wiz-next")
    page.visible("#view-dashboard", what="dashboard")
    page.wait_text("#task-label", label, 30, "the task named on the model layer")
    page.click("#traffic-toggle")
    page.wait_text("#traffic-state", "feedback", what="replayed traffic with late labels")
    page.wait(lambda drv: (tile(d, metric) or "–") != "–", 90, f"{metric} from the labelled rows")
    titles = model_chart_titles(d)
    assert any(score_title in t for t in titles), titles
    assert tile(d, "Anomaly rate") is None and tile(d, "Positive rate") is None
    page.shot("dashboard")
    page.click("#traffic-toggle")
    page.wait_text("#traffic-state", "no traffic", what="replay stopped")
