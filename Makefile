# gmtrace: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# Both create the virtual environment when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup photos browser demo test lint format bench-zoo clean

setup: $(STAMP) photos

# real photographs from Debian packages (docs/photos.md); no apt call once installed
photos:
	bash scripts/install_photos.sh

# torch first, pinned, from the machine's CPU wheel: any other torch requirement
# would pull several GB of CUDA packages. pyproject keeps its own range loose.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# A small zoo of GMs the shipped model never saw (another seed), analyzed and
# compared with the truth; then one image and one real photograph in detail; then
# the whole zoo scanned as a case, grouped, and reported as one HTML file (the
# case is scanned afresh: an earlier demo's rows may be of another model).
demo: setup
	$(BIN)/gmtrace zoo build --preset demo --seed 7 --out demo_zoo
	$(BIN)/gmtrace check demo_zoo
	$(BIN)/gmtrace analyze demo_zoo/fake/dcgan_000/00000.png demo_zoo/fake/unet_000/00000.png \
		$$(find demo_zoo/real -name '*.png' | sort | head -2)
	rm -f demo_zoo/case.jsonl
	$(BIN)/gmtrace scan demo_zoo/fake demo_zoo/real --out demo_zoo/case.jsonl
	$(BIN)/gmtrace group demo_zoo/case.jsonl --out demo_zoo/groups.json
	$(BIN)/gmtrace report demo_zoo/case.jsonl --groups demo_zoo/groups.json \
		--out demo_zoo/report.html --title "demo zoo"
	@echo "report: $(CURDIR)/demo_zoo/report.html"

# Debian's Chromium and chromedriver, for the browser test of the web page
browser:
	bash scripts/install_browser.sh

test: setup browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench-zoo: setup
	$(BIN)/python benchmarks/zoo_build.py

clean:
	rm -rf $(VENV) demo_zoo .pytest_cache
