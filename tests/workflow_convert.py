"""Turn a UI-format workflow (what ComfyUI's frontend saves) into an API prompt, using /object_info.

A small reader of the frontend's saved format for tests: widget values are assigned to the node's
widget inputs in schema order (an INT with a "control after generate" widget carries one extra value: the
frontend adds one when the input asks for it, and by default to INT inputs named seed or noise_seed), and
links become ``[node_id, output_slot]`` references.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def has_control_widget(name: str, spec) -> bool:
    """Whether the frontend adds a "control after generate" widget after this INT input: as the input's
    ``control_after_generate`` says, else for inputs named seed / noise_seed (the frontend's default)."""
    if spec[0] != "INT":
        return False
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    flag = opts.get("control_after_generate")
    return bool(flag) if flag is not None else name in ("seed", "noise_seed")


def to_prompt(workflow: dict, object_info: dict) -> dict:
    links = {lk[0]: lk for lk in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        info = object_info[node["type"]]
        specs = list(info["input"].get("required", {}).items()) + list(info["input"].get("optional", {}).items())
        values = list(node.get("widgets_values") or [])
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs, k = {}, 0
        for name, spec in specs:
            if name in linked:
                lk = linked[name]
                inputs[name] = [str(lk[1]), lk[2]]
                if is_widget(spec):
                    k += 1 + has_control_widget(name, spec)
                continue
            if is_widget(spec):
                if k < len(values):
                    inputs[name] = values[k]
                k += 1
                if has_control_widget(name, spec):
                    k += 1
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
