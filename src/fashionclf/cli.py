"""The command line: each command parses its options and calls one library function."""

from __future__ import annotations

import inspect
import json
import logging
import math
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, TypeVar, cast

import typer
from PIL import Image
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fashionclf.config import TrainConfig, default_in_words, settings_file
from fashionclf.errors import FashionClfError, FashionClfWarning
from fashionclf.files import STORAGE_PROBLEMS, CheckedStdout, one_line, write_error
from fashionclf.models import list_models, model_entry
from fashionclf.rundir import existing_model, open_run
from fashionclf.settings import declaration, declared, kinds, option_name

if TYPE_CHECKING:
    from fashionclf.inference import Prediction  # imports torch: only where a command needs it

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build, measure and serve a clothing classifier on Fashion-MNIST.",
)
console = Console()


def _with_default(help: str, default: str) -> str:
    """The help with its default in words: the option's own default is None (unset: the recipe's value)."""
    return f"{help} {escape(f'[default: {default}]')}" if default else help  # brackets are markup to rich


DataPath = Annotated[Path | None, typer.Option("--data", "--data-dir", help=declaration(TrainConfig, "data").help)]
Device = Annotated[str, typer.Option(help=declaration(TrainConfig, "device").help)]
Precision = Annotated[
    str,
    typer.Option(
        help="For a run directory or an export: auto (the fastest here of fp32 and its int8 model, when there is "
        "one), fp32 or int8."
    ),
]
Preprocessing = Annotated[
    str | None,
    typer.Option(help=_with_default(declaration(TrainConfig, "preprocessing").help, default_in_words("preprocessing"))),
]


def _a_run(path: Path | None) -> Path | None:
    """A run directory, checked before the command imports its stage: a mistyped path is refused at once, not after
    seconds of importing torch."""
    if path is not None:
        open_run(path)
    return path


BudgetOption = Annotated[
    float | None,
    typer.Option(
        min=1,
        help=_with_default(
            "Seconds of bench's calls, warm-up included: fewer rounds and calls where those asked would not fit.",
            "bench's own (docs/inference.md)",
        ),
    ),
]
RunArg = Annotated[Path, typer.Argument(help="A run directory written by `fashionclf train`.", callback=_a_run)]
ModelArg = Annotated[
    Path, typer.Argument(help="A run directory, an exported folder or a model file.", callback=existing_model)
]
AllowChangedData = Annotated[
    bool,
    typer.Option(
        "--allow-changed-data",
        help=_with_default(
            "Go on with the run's own data though its checksums differ from those config.json recorded in "
            "training: with a warning, and recorded in the result file as data_changed.",
            "refuse it",
        ),
    ),
]


def _show(result: dict, as_json: bool, *tables: Callable[[dict], Table]) -> None:
    """The result as one JSON object on stdout, or as tables for a person."""
    if as_json:
        print(json.dumps(result))
        return
    for table in tables:
        console.print(table(result))


@app.command()
def data(data: DataPath = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Find (or download), verify and describe the dataset."""
    from fashionclf.datasets import describe
    from fashionclf.sources import load_dataset

    info = describe(load_dataset(data))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    console.print(f"data from [bold]{info['directory']}[/] (found via {info['origin']})")
    for file in info["files"]:
        console.print(f"  {file['filename']}: sha256 {file['raw_sha256'][:16]}...")
    checked = {"csv": "every row checked", "photos": "photos decoded and cached"}.get(
        info["origin"], "IDX headers and checksums verified"
    )
    console.print(f"{len(info['classes'])} classes: {', '.join(info['classes'])}; {checked}")
    for name, split in info["splits"].items():
        console.print(f"  {name}: {split['images']:,} images ({split['from']})")


Command = TypeVar("Command", bound=Callable[..., None])


def _with_settings(*names: str) -> Callable[[Command], Command]:
    """The command takes the declared training settings (all of them, or those named) as options after its own,
    and gets them in its **settings; an option left unset is None there."""

    def add_settings(command: Command) -> Command:
        own = inspect.signature(command, eval_str=True).parameters.values()
        parameters = [parameter for parameter in own if parameter.kind is not parameter.VAR_KEYWORD]
        cast(Any, command).__signature__ = inspect.Signature([*parameters, *_setting_options(names)])
        return command

    return add_settings


def _setting_options(names: tuple[str, ...]) -> list[inspect.Parameter]:
    """Typer's parameters for the declared settings: named, typed, explained and grouped as declared."""
    options = []
    for each, declared_as in declared(TrainConfig):
        kind, _ = kinds(TrainConfig)[each.name]
        if (names and each.name not in names) or (kind is dict and declared_as.item is None):
            continue  # not asked for, or a mapping no option spells (model_args)
        name = option_name(each.name)
        option = typer.Option(
            f"{name}/--no-{name[2:]}" if kind is bool else name,
            *declared_as.aliases,
            help=_with_default(declared_as.help, default_in_words(each.name)),
            rich_help_panel=declared_as.group,
        )
        taken = list[str] if kind is dict else Path if declared_as.path else kind
        annotation = Annotated[taken | None, option]  # type: ignore[valid-type]  # a type known at run time
        options.append(
            inspect.Parameter(each.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        )
    return options


def _config(options: dict[str, Any], config_file: Path | None = None) -> TrainConfig:
    """The recipe's settings, then those of --config's file, then the options given."""
    settings = {**(settings_file(config_file) if config_file else {}), **_given(options)}
    return TrainConfig.from_recipe(settings.pop("recipe", "seed"), **settings)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line, as settings."""
    given = {}
    for name, value in options.items():
        if value is None:
            continue
        declared_as = declaration(TrainConfig, name)
        if declared_as.item is not None:
            value = dict(map(declared_as.item, value))
        given[name] = str(value) if declared_as.path else value
    return given


@app.command()
@_with_settings()
def train(
    out: Annotated[Path | None, typer.Option(help=_with_default("Run directory.", "runs/<model>-seed<seed>"))] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the stopped run in this directory.", callback=_a_run)
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings from a JSON file: a run's config.json (to train it again), or an object of settings; "
            "the options given override them.",
        ),
    ] = None,
    **settings: Any,
) -> None:
    """Train a model, or fine-tune one (--init) on other data; a checkpoint is written after every epoch.
    Started by torchrun, it trains data-parallel across the processes."""
    if resume is None:
        config = _config(settings, config_file)  # a bad option is refused before torch is imported
    from fashionclf import distributed
    from fashionclf import train as training

    if resume is not None:
        run = training.resume(resume)
    else:
        run = training.train(config, out or Path("runs") / f"{config.model}-seed{config.seed}")
    if distributed.is_main():
        console.print(f"run directory: {run.root}")


@app.command()
def evaluate(
    run_dir: RunArg,
    device: Device = "auto",
    data: DataPath = None,
    split: Annotated[
        str,
        typer.Option(
            help="auto (the test split, or the validation split where there is none), test, validation, train, or "
            "all (every image: for data the model never trained on)."
        ),
    ] = "auto",
    class_map: Annotated[
        str | None,
        typer.Option(
            help="Judge data of other classes through a JSON map from its class names to lists of the model's (a "
            "file, or a shipped map by name: clothing-small)."
        ),
    ] = None,
    preprocessing: Preprocessing = None,
    allow_changed_data: AllowChangedData = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate a run's best checkpoint on its own data, or on --data: metrics.json and figures."""
    from fashionclf.evaluate import evaluate_run, metrics_table

    metrics = evaluate_run(
        run_dir, device=device, data_path=data, split=split, class_map=class_map, preprocessing=preprocessing,
        allow_changed_data=allow_changed_data,
    )  # fmt: skip
    _show(metrics, as_json, metrics_table)


@app.command()
def report(run_dir: RunArg) -> None:
    """Write report.md and a self-contained report.html for an evaluated run."""
    from fashionclf.report import build_report

    console.print(f"report: {build_report(run_dir)}")


@app.command()
def analyze(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A trained run; omit it and give --model instead.", callback=_a_run)
    ] = None,
    model: Annotated[str | None, typer.Option(help="Analyse an untrained registered model.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="The large batch for timing (batch 1 is always timed); default: 256, fewer large inputs."),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed runs per layer, after warm-up (fewer where slow).")] = 30,
    device: Device = "cpu",
    allow_changed_data: AllowChangedData = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Receptive field, FLOPs and MACs, and measured per-layer time; saved into the run when one is given."""
    from fashionclf.analysis import analysis_table
    from fashionclf.analysis import analyze as analyze_model

    result = analyze_model(
        run_dir, model, batch_size=batch_size, repeats=repeats, device=device, allow_changed_data=allow_changed_data
    )
    _show(result, as_json, analysis_table)


@app.command()
def quantize(
    run_dir: RunArg,
    method: Annotated[
        list[str] | None,
        typer.Option(
            help=_with_default(
                "dynamic, static or qat; repeat for several.",
                "dynamic and static, and qat when static int8 loses more than 0.3 points or agrees with fp32 on "
                "fewer than 99.5% of the evaluated images (the test split, else validation), unless the model is "
                "pretrained",
            )
        ),
    ] = None,
    allow_changed_data: AllowChangedData = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Quantize the run's best model to int8 and export ONNX; every file's test accuracy is measured."""
    from fashionclf.quantize import quantization_table, quantize_run

    summary = quantize_run(run_dir, tuple(method or ("dynamic", "static")), allow_changed_data=allow_changed_data)
    _show(summary, as_json, quantization_table)


@app.command()
def bench(
    run_dir: RunArg,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds; each times every model file.")] = 5,
    budget: BudgetOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Latency, throughput, size and accuracy of every model file and backend, side by side in one run."""
    from fashionclf.bench import bench_run, bench_table, goals_table

    _show(bench_run(run_dir, rounds=rounds, budget_s=budget), as_json, bench_table, goals_table)


@app.command()
@_with_settings("recipe", "epochs", "image_size", "channels_last", "bf16", "seed", "device", "data", "vote_run")
def run(
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/seed"),
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the summary at the end.")] = False,
    budget: BudgetOption = None,
    **settings: Any,
) -> None:
    """The main job: data -> train -> evaluate -> analyze -> quantize -> bench -> report, each stage announced
    with its time, ending with a summary of what was measured."""
    config = _config(settings)  # a bad option is refused before torch is imported
    from fashionclf.pipeline import run_all

    if quiet:
        logging.getLogger("fashionclf").setLevel(logging.WARNING)
    console.print(summary_table(run_all(config, out, progress=not quiet, bench_budget_s=budget)))


def summary_table(summary: dict) -> Table:
    table = Table(title="fashionclf run: summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    accuracy, seed_report, large = summary["accuracy"], summary["seed_report_accuracy"], summary["large_batch"]
    compared = f" (seed report: {seed_report:.2%}, {100 * (accuracy - seed_report):+.2f} points)" if seed_report else ""
    table.add_row(f"{summary['split']} accuracy", f"{accuracy:.2%}{compared}")
    for label, row in (("int8 model", summary["int8"]), ("runtimes' best int8", summary["peer_int8"])):
        if row:
            table.add_row(label, f"{row['method']}: {row['accuracy']:.2%}, {row['megabytes']:.2f} MB, "
                          f"{row['images_per_s']:,.0f} images/s at batch {large} ({row['backend']})")  # fmt: skip
    table.add_row("int8 on this CPU", summary["int8_verdict"])
    slowest = summary["slowest_layer"]
    table.add_row("slowest layer", f"{slowest['name']} ({slowest['type']}), {slowest['time_share']:.0%} of the forward "
                  f"time at batch {slowest['batch']}")  # fmt: skip
    table.add_row("report", summary["report"])
    return table


@app.command()
def predict(
    model: ModelArg,
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=10)] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    save_input: Annotated[Path | None, typer.Option(help="Write the image the model saw into DIR.")] = None,
    explain: Annotated[
        Path | None, typer.Option(help="Write heat maps of the top classes into DIR, over that image and the picture.")
    ] = None,
    precision: Precision = "auto",
    preprocessing: Preprocessing = None,
) -> None:
    """Classify pictures: any size, any format Pillow reads and HEIC, brought to the model's input first."""
    from tqdm import tqdm

    from fashionclf.inference import Prediction, load_classifier, predict_files, save_model_input
    from fashionclf.preprocess import image_files

    classifier = load_classifier(model, precision, preprocessing)
    explainer = None
    if explain is not None:
        from fashionclf.explain import load_explainer

        explainer = load_explainer(model, classifier.spec)
    files, problems = image_files(inputs)
    printed = 0
    try:
        with tqdm(total=len(files), unit="image", disable=None, leave=False) as bar:
            for result in predict_files(classifier, files, k=top_k):
                bar.update()
                if not isinstance(result, Prediction):
                    problems.append(result)
                    continue
                bar.write(json.dumps({"file": result.name, "top_k": result.top}) if as_json else _result_line(result))
                printed += 1
                if save_input is not None:
                    save_model_input(result, save_input)
                if explainer is not None and explain is not None:
                    explainer.write_heat_maps(result.name, result.top, explain)
    except FashionClfError as exc:  # a write that failed: what was done is printed above, where it stopped is said
        _print_problems(problems)
        raise FashionClfError(f"{exc}; predict stopped after {printed} of {len(files)} pictures") from None
    _print_problems(problems)
    if problems:
        sys.exit(2)


def _result_line(result: Prediction) -> str:
    labels = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result.top)
    return f"{one_line(result.name)}: {labels}"


def _print_problems(problems: list[tuple[str, str]]) -> None:
    for name, problem in problems:
        _print_error(f"{name}: {problem}")


def _print_error(message: str) -> None:
    """One line on stderr, whatever the message holds: a file name with a newline in it cannot split it."""
    print(f"fashionclf: error: {one_line(message)}", file=sys.stderr)


@app.command()
def serve(
    model: ModelArg,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on, 0 to 65535; 0 picks a free one.")] = 8000,
    max_mb: Annotated[float, typer.Option(help="Largest request accepted, in MB.")] = 10.0,
    max_files: Annotated[int, typer.Option(help="Most pictures in one request.")] = 32,
    max_megapixels: Annotated[float, typer.Option(help="Most pixels in one request's pictures, in millions.")] = 100.0,
    precision: Precision = "auto",
    preprocessing: Preprocessing = None,
) -> None:
    """Serve the model: POST /predict, GET /health, an upload page at /, the API's documentation at /docs."""
    from fashionclf.listener import listen, url

    # Checked before anything slow is imported or loaded, so that a wrong value is told at once.
    limits = dict(
        bytes=_limit("--max-mb", max_mb, 1024 * 1024, "byte"),
        files=_limit("--max-files", max_files, 1, "file"),
        pixels=_limit("--max-megapixels", max_megapixels, 1_000_000, "pixel"),
    )
    with listen(host, port) as listener:
        from fashionclf.explain import load_explainer
        from fashionclf.inference import load_classifier
        from fashionclf.serve import Limits
        from fashionclf.serve import serve as run_server

        classifier = load_classifier(model, precision, preprocessing)
        print(f"serving on {url(listener)} (Ctrl-C stops it)", flush=True)
        run_server(classifier, listener, Limits(**limits), explainer=lambda: load_explainer(model, classifier.spec))


@app.command()
def export(
    run_dir: RunArg,
    out: Annotated[Path, typer.Argument(help="The folder to write: a new one, or an empty one.")],
    licence: Annotated[
        str, typer.Option("--license", help="The model card's licence, an identifier the Hugging Face Hub knows.")
    ] = "unknown",
) -> None:
    """Write the run's model as a folder to share: model.safetensors, model.onnx (and its int8 model), config.json
    and a model card (README.md); predict and serve take the folder."""
    from fashionclf.export import export_run

    print(f"exported {run_dir} to {export_run(run_dir, out, licence)}")


def _limit(option: str, value: float, unit: int, name: str) -> int:
    """A limit in whole units (bytes, files, pixels). A value under one unit would answer every request with 413,
    and nan or inf is no limit a user meant: both are refused."""
    if not math.isfinite(value) or value <= 0:
        raise FashionClfError(f"{option}: {value:g} is not a positive finite number")
    if value * unit < 1:
        raise FashionClfError(f"{option}: {value:g} is less than one {name}")
    return int(min(value * unit, sys.maxsize))  # the product of a finite value may still overflow to inf


@app.command("models")
def list_registered() -> None:
    """List the registered models."""
    for name in list_models():
        console.print(f"{name}: {model_entry(name).description}")


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM as an exit, not a kill: temporary folders (quantize's scratch), locks and open files are cleaned up
    on the way out, as for Ctrl-C; a killed quantize left an empty quantized/tmp*/ behind."""
    sys.exit(128 + signum)


def main() -> None:
    """Entry point: user errors, and writes that fail (to stdout too), become one line on stderr and exit code 2
    (typer maps Ctrl-C to 130); the project's warnings one line each; its progress messages on stdout, around the
    progress bars; third-party noise that tells a user nothing filtered out."""
    warnings.showwarning = _show_warning
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    _quiet_third_parties()
    progress = logging.getLogger("fashionclf")
    progress.addHandler(_AroundBars())
    progress.setLevel(logging.INFO)
    # Only there: a library that logs through the root logger gives it a handler (ONNX Runtime's quantizer does),
    # which would print every progress line a second time, as "INFO:fashionclf...".
    progress.propagate = False
    sys.stdout = cast(TextIO, CheckedStdout(sys.stdout))
    try:
        app()
    except FashionClfError as exc:
        _print_error(str(exc))
        sys.exit(2)
    except MemoryError:
        _print_error("not enough memory for this input")
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in STORAGE_PROBLEMS:
            raise
        # A write that does not go through files.writing (train.py's log lines): one line as well.
        _print_error(str(write_error(exc.filename or "a file", exc)))
        sys.exit(2)


_third_party_warning = warnings.showwarning


class _AroundBars(logging.Handler):
    """Messages written above tqdm's progress bars instead of through them."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record))


def _quiet_third_parties() -> None:
    """What the libraries print while fashionclf works, that a user can do nothing about."""
    # Pillow warns of pictures over its own limit; ours is lower and refuses them with a message of its own.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # torch's ONNX exporter lists the torchvision operators it skips; torchvision is not used. (A filter on the
    # logger itself: torch sets its loggers' levels when it is imported, later than this.)
    logging.getLogger("torch.onnx._internal.exporter._registration").addFilter(
        lambda record: "torchvision is not installed" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
    # The x86 quantizer notes that the first layer's pooling stays fp32: quantize keeps that layer fp32 on purpose.
    warnings.filterwarnings("ignore", message="The input of maxpool2d is not quantized", category=UserWarning)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, FashionClfWarning):
        print(f"fashionclf: warning: {one_line(str(message))}", file=sys.stderr)
    else:
        _third_party_warning(message, category, filename, lineno, file, line)
