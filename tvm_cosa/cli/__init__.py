"""`tvm-cosa` command line. Each command lives in its own module and is imported on use, so
`tvm-cosa schedule` does not pay for importing TVM."""

import importlib

import click

# command name -> (module, function, one-line help)
COMMANDS = {
    "schedule": ("tvm_cosa.cli.schedule", "schedule",
                 "Schedule layers on an architecture and print each loop nest."),
    "evaluate": ("tvm_cosa.cli.evaluate", "evaluate",
                 "Evaluate a Timeloop mapping with the built-in model or Timeloop."),
    "compile": ("tvm_cosa.cli.compile", "compile_",
                "Compile an ONNX model with CoSAPass and print the per-layer report."),
    "verify": ("tvm_cosa.cli.verify", "verify",
               "Run a model compiled for Gemmini on the functional model against onnxruntime."),
    "sweep": ("tvm_cosa.cli.sweep", "sweep",
              "Sweep models over a design space of configurations; report the Pareto front."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("tvm_cosa"):
                raise click.ClickException(f"'{name}' is not available in this build") from None
            raise click.ClickException(
                f"'{name}' needs the package {err.name!r}: pip install 'tvm_cosa[tvm]'") from None

    def format_commands(self, ctx, formatter):
        formatter.write_dl([(n, h) for n, (_, _, h) in COMMANDS.items()])


@click.group(cls=LazyGroup)
@click.version_option(package_name="tvm_cosa")
def main():
    """CoSA scheduling for spatial DNN accelerators."""
