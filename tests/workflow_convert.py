"""Turn a UI-format workflow (what ComfyUI's frontend saves) into an API prompt, using /object_info.

A small reader of the frontend's saved format for tests: widget values are assigned to the node's
widget inputs in schema order (an INT with control_after_generate carries one extra value), and
links become ``[node_id, output_slot]`` references.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


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
                    k += 1
                continue
            if is_widget(spec):
                if k < len(values):
                    inputs[name] = values[k]
                k += 1
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if opts.get("control_after_generate"):
                    k += 1
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
