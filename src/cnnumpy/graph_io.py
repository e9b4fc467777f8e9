"""Graph models to and from configs; their summary table. Model files load through
:func:`cnnumpy.model_file.build_graph`, which checks every shape before building.

The config follows Keras' functional config::

    {"class_name": "Model", "name": "model",
     "layers": [{"class_name": "InputLayer", "name": "input_layer",
                 "config": {...}, "inbound_nodes": []},
                {"class_name": "Conv2D", "name": "conv2d", "config": {...},
                 "inbound_nodes": [[["input_layer", 0, 0]]]},
                {"class_name": "Add", "name": "add", "config": {...},
                 "inbound_nodes": [[["conv2d", 0, 0], ["input_layer", 0, 0]]]}, ...],
     "input_layers": [["input_layer", 0, 0]], "output_layers": [["add", 0, 0]]}

Each layer lists one entry per call (node), each the ``[layer_name, node_index, 0]`` of the
tensors it was called on. In a model file the weights are ``layers.{layer_name}.{weight}``.

Rebuilding trusts nothing: layer classes come from the explicit tables only
(:data:`cnnumpy.layers.LAYERS`, :data:`cnnumpy.layers.merge.MERGE_LAYERS`, ``InputLayer``),
and unknown layers, duplicate names, references to missing layers or calls, cycles, layers
or calls not connected to the output, and shapes that disagree are all refused by name.
"""

from __future__ import annotations

from typing import Any

from cnnumpy.graph import InputLayer, Node, SymbolicTensor, call_layer
from cnnumpy.layers import Layer, layer_from_config
from cnnumpy.layers.merge import MERGE_LAYERS, Merge

CLASS_NAME = "Model"


def is_graph_config(config: Any) -> bool:
    """True for a config written by ``Model.get_config`` (a stack's has no class name)."""
    return isinstance(config, dict) and config.get("class_name") == CLASS_NAME


def _ref(model: Any, t: SymbolicTensor) -> list:
    return [t.layer.name, model.node_index(t.node), 0]


def graph_config(model: Any) -> dict[str, Any]:
    """``model``'s config (see the module docstring)."""
    layers = []
    for layer in model.layers:
        calls = model._calls[id(layer)]
        layers.append({"class_name": type(layer).__name__, "name": layer.name,
                       "config": layer.get_config(),
                       "inbound_nodes": [[_ref(model, t) for t in node.inputs]
                                         for node in calls if node.inputs]})
    return {"class_name": CLASS_NAME, "name": model.name, "layers": layers,
            "input_layers": [_ref(model, model.input)],
            "output_layers": [_ref(model, model.output)]}


def summary_table(model: Any) -> str:
    """The text of ``model.summary()``: one row per layer, with a "Connected to" column."""
    rows = []
    for layer in model.layers:
        calls = model._calls[id(layer)]
        shapes = sorted({str((None, *n.output.shape)) for n in calls})
        links = [f"{t.layer.name}[{model.node_index(t.node)}][0]" for n in calls
                 for t in n.inputs]
        rows.append((f"{layer.name} ({type(layer).__name__})", ", ".join(shapes),
                     f"{layer.count_params():,}", ", ".join(links) or "-"))
    header = ("Layer (type)", "Output Shape", "Param #", "Connected to")
    widths = [max(len(r[i]) for r in [header, *rows]) + 2 for i in range(4)]
    line = "-" * sum(widths)
    fmt = "".join(f"{{:<{w}}}" for w in widths)
    total = model.count_params()
    trainable = sum(layer.count_trainable_params() for layer in model.layers)
    return "\n".join([f'Model: "{model.name}"', line, fmt.format(*header).rstrip(),
                      "=" * len(line), *(fmt.format(*r).rstrip() for r in rows),
                      "=" * len(line), f"Total params: {total:,}",
                      f"Trainable params: {trainable:,}",
                      f"Non-trainable params: {total - trainable:,}", line])


# ----- rebuilding ------------------------------------------------------------------------------
def _make_layer(item: dict) -> Layer:
    name = item["class_name"]
    if name == "InputLayer":
        return InputLayer.from_config(item["config"])
    if name in MERGE_LAYERS:
        try:
            return MERGE_LAYERS[name].from_config(item["config"])
        except TypeError as exc:
            raise ValueError(f"{name}: bad config {item['config']!r}: {exc}") from None
    return layer_from_config(item)


def _check_ref(ref: Any, table: dict[str, dict], where: str) -> tuple[str, int]:
    if (not isinstance(ref, list) or len(ref) != 3 or not isinstance(ref[0], str)
            or any(type(v) is not int for v in ref[1:])):
        raise ValueError(f"{where}: a tensor reference must be [layer_name, node_index, 0], "
                         f"received {ref!r}")
    name, index, tensor = ref
    if name not in table:
        raise ValueError(f"{where} refers to a missing layer {name!r}")
    calls = max(1, len(table[name]["inbound_nodes"]))  # an InputLayer has one, implicit
    if tensor != 0 or not 0 <= index < calls:
        raise ValueError(f"{where} refers to {ref!r}, but layer {name!r} has {calls} call(s) "
                         "with one output each")
    return name, index


def _layer_table(config: Any) -> dict[str, dict]:
    """The config's layers by name, each entry checked for form; duplicates refused."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError("a graph model config must be a dict with a 'layers' list")
    table: dict[str, dict] = {}
    for i, item in enumerate(config["layers"]):
        if (not isinstance(item, dict) or not isinstance(item.get("name"), str)
                or not isinstance(item.get("class_name"), str)
                or not isinstance(item.get("config"), dict)
                or not isinstance(item.get("inbound_nodes"), list)):
            raise ValueError(f"layers[{i}] must hold class_name, name, config and "
                             f"inbound_nodes (a list), received {item!r}")
        name = item["name"]
        if item["config"].get("name", name) != name:
            raise ValueError(f"layers[{i}]: name {name!r} disagrees with its config's name "
                             f"{item['config']['name']!r}")
        if name in table:
            raise ValueError(f"duplicate layer name {name!r}")
        is_input = item["class_name"] == "InputLayer"
        if is_input != (not item["inbound_nodes"]):
            raise ValueError(f"layer {name!r}: " + (
                "an InputLayer takes no inbound nodes" if is_input
                else "has no inbound nodes (only an InputLayer may have none)"))
        table[name] = item
    return table


def call_order(table: dict[str, dict], layers: dict[str, Layer]) -> list[tuple]:
    """Every call the config lists, ``(layer_name, call_index, [(layer_name, call_index),
    ...])``, in an order where each call comes after the calls whose outputs it takes; from
    the names alone, nothing is called or built.

    A call waits until the tensors it takes exist (``A(B(A(x)))`` needs several sweeps);
    a sweep that makes none means a cycle.
    """
    made = {(name, 0) for name, layer in layers.items() if isinstance(layer, InputLayer)}
    pending: list[tuple[str, int, list]] = []
    for name, item in table.items():
        for k, node in enumerate(item["inbound_nodes"]):
            where = f"layer {name!r} call {k}"
            if not isinstance(node, list) or not node:
                raise ValueError(f"{where}: inbound node must be a non-empty list of tensor "
                                 f"references, received {node!r}")
            refs = [_check_ref(ref, table, where) for ref in node]
            if not isinstance(layers[name], Merge) and len(refs) != 1:
                raise ValueError(f"{where}: {layers[name].label} takes one input, the config "
                                 f"gives {len(refs)}")
            pending.append((name, k, refs))
    order = []
    while pending:
        waiting = []
        for name, k, refs in pending:
            if all(r in made for r in refs) and (k == 0 or (name, k - 1) in made):
                order.append((name, k, refs))
                made.add((name, k))
            else:
                waiting.append((name, k, refs))
        if len(waiting) == len(pending):
            raise ValueError(f"the layers {' -> '.join(_cycle(waiting, made))} form a "
                             "cycle (each waits for the next one's output)")
        pending = waiting
    return order


def check_connected(config: dict, table: dict[str, dict], layers: dict[str, Layer],
                    order: list[tuple]) -> None:
    """Every call of every layer is needed by the output, which needs no input but the
    model's (from the names alone)."""
    output = _endpoint_ref(config, "output_layers", table)
    takes = {(name, k): refs for name, k, refs in order}
    needed, stack = set(), [output]
    while stack:
        ref = stack.pop()
        if ref not in needed:
            needed.add(ref)
            stack.extend(takes.get(ref, []))
    for name, item in table.items():
        calls = max(1, len(item["inbound_nodes"]))
        used = sum((name, k) in needed for k in range(calls))
        if used != calls:
            raise ValueError(f"layer {name!r} is not connected to the output ({used} of its "
                             f"{calls} call(s) are)")
    first, _ = _endpoint_ref(config, "input_layers", table)
    for name, layer in layers.items():  # connected, so the output needs it
        if isinstance(layer, InputLayer) and name != first:
            raise ValueError(f"graph disconnected: the output needs {layer.label}, which is "
                             "not among the model's inputs")


def _replay(order: list[tuple], layers: dict[str, Layer]) -> dict[tuple[str, int], Any]:
    """Call the layers on each other in ``order`` (building those not built); return every
    tensor by reference."""
    tensors: dict[tuple[str, int], Any] = {}
    for name, layer in layers.items():
        if isinstance(layer, InputLayer):
            tensors[(name, 0)] = Node(layer, [], layer.input_shape, layer.dtype).output
    for name, k, refs in order:
        args = [tensors[r] for r in refs]
        layer = layers[name]
        tensors[(name, k)] = call_layer(layer, args if isinstance(layer, Merge) else args[0])
    return tensors


def _cycle(waiting: list[tuple[str, int, list]], made: set) -> list[str]:
    """Follow, from the first waiting call, what each waits for until a call repeats."""
    waits = {(name, k): next((r for r in refs if r not in made), (name, k - 1))
             for name, k, refs in waiting}
    path = [(waiting[0][0], waiting[0][1])]
    while path[-1] in waits and waits[path[-1]] not in path:
        path.append(waits[path[-1]])
    start = path.index(waits[path[-1]]) if waits.get(path[-1]) in path else 0
    loop = path[start:] + [path[start]]
    return [name for name, _ in loop]


def _endpoint_ref(config: dict, key: str, table: dict) -> tuple[str, int]:
    refs = config.get(key)
    if not isinstance(refs, list) or len(refs) != 1:
        raise ValueError(f"{key} must be a list of exactly one tensor reference, received "
                         f"{refs!r}")
    return _check_ref(refs[0], table, key)


def make_layers(config: Any) -> tuple[dict[str, dict], dict[str, Layer], list[tuple]]:
    """The config's layer table, its layers (made, not built) by name, and the order of
    their calls; every reference and the input checked by name (see also
    :func:`check_connected`)."""
    table = _layer_table(config)
    layers = {name: _make_layer(item) for name, item in table.items()}
    for name, layer in layers.items():
        if layer.name != name:  # a config without a name of its own
            layer.name = name
    order = call_order(table, layers)
    name, _ = _endpoint_ref(config, "input_layers", table)
    if not isinstance(layers[name], InputLayer):
        raise ValueError(f"input_layers must name an InputLayer, received {layers[name].label}")
    return table, layers, order


def model_from_config(config: Any, layers: tuple | None = None) -> Any:
    """A ``Model`` rebuilt from its config, weights freshly initialized (or, with
    ``layers``, the :func:`make_layers` of ``config`` whose layers are already built).

    Raises:
        ValueError: naming the problem: a malformed entry, an unknown layer class, a
            duplicate name, a reference to a missing layer or call, a cycle, a layer or call
            not connected to the output, or shapes that disagree.
    """
    from cnnumpy.graph_model import Model

    table, made, order = make_layers(config) if layers is None else layers
    tensors = _replay(order, made)
    check_connected(config, table, made, order)
    x = tensors[_endpoint_ref(config, "input_layers", table)]
    y = tensors[_endpoint_ref(config, "output_layers", table)]
    return Model(x, y, name=config.get("name", "model"))
