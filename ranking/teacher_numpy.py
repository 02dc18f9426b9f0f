"""The MMoE teacher's forward pass in NumPy, from its weights saved as plain arrays.

Why: at serving time the teacher scores ~150 candidates of one request. TensorFlow's call
(signature binding, tensor conversion, graph dispatch of ~70 ops) cost ~1–2 ms of a 5 ms
request on the 2-core machine; the same arithmetic in NumPy costs a fraction of that. The
SavedModel stays the teacher's published form (training, evaluation and any TF server use it);
the arrays are its weights, written next to it by `export_arrays` at save time and covered by
the manifest's checksums. `Teacher.load` checks on a probe batch that this forward pass gives
the SavedModel's probabilities (|Δ| ≤ 1e-5) and serves with TensorFlow otherwise.

`forward` mirrors `training.ranking.mmoe.MMoERanker.call` step by step (inference: dropout off); a
change there needs the same change here — the load-time probe and
`tests/unit/test_ranking_model.py` catch a mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ranking.layout import Layout

DIRECTORY = "arrays"
LAYOUT = "layout.json"
FORMAT = 1


def _dense_weights(layer: Any) -> list[np.ndarray]:
    kernel, bias = layer.get_weights()
    return [np.asarray(kernel, np.float32), np.asarray(bias, np.float32)]


def _sequential(model: Any) -> list[list[np.ndarray]]:
    """The Dense layers of a Sequential (Dropout has no weights)."""
    return [_dense_weights(layer) for layer in model.layers if layer.get_weights()]


def export_arrays(model: Any, directory: Path) -> None:
    """Write a trained `MMoERanker`'s weights as .npy files + a layout JSON into `directory/arrays`."""
    s = model.settings
    out = Path(directory) / DIRECTORY
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}

    def put(name: str, value: np.ndarray) -> None:
        arrays[name] = np.asarray(value, np.float32)

    for name, layer in model.tables.items():
        put(f"emb.{name}", layer.get_weights()[0])
    first_order, num_linear = model.first_order, model.num_linear  # key "" (shared) or per task
    linear_keys = list(first_order) if s.fm else []  # first-order terms belong to the FM part
    for k in linear_keys:
        tables = first_order[k]
        for name, layer in tables.items():
            put(f"first.{k}.{name}", layer.get_weights()[0][:, 0])
        kernel, bias = _dense_weights(num_linear[k])
        put(f"num_linear.{k}.kernel", kernel[:, 0])
        put(f"num_linear.{k}.bias", bias)
    put("user_num_v", model.user_num_v.numpy())
    put("row_num_v", model.row_num_v.numpy())
    if s.numeric_buckets:
        for side, layer in model.bucket_tables.items():
            put(f"buckets.{side}", layer.get_weights()[0])
    task_experts = model.task_expert_nets  # CGC: each task's own experts (none by default)
    experts = {"shared": model.experts, **task_experts}
    for group, nets in experts.items():
        for i, net in enumerate(nets):
            for j, (kernel, bias) in enumerate(_sequential(net)):
                put(f"expert.{group}.{i}.{j}.kernel", kernel)
                put(f"expert.{group}.{i}.{j}.bias", bias)
    for t in s.tasks:
        kernel, bias = _dense_weights(model.gates[t])
        put(f"gate.{t}.kernel", kernel)
        put(f"gate.{t}.bias", bias)
        for j, (kernel, bias) in enumerate(_sequential(model.towers[t])):
            put(f"tower.{t}.{j}.kernel", kernel)
            put(f"tower.{t}.{j}.bias", bias)
        if t in model.fm_heads:  # `fm_tasks`: not every task need read the FM part out
            kernel, bias = _dense_weights(model.fm_heads[t])
            put(f"fm_head.{t}.kernel", kernel[:, 0])
            put(f"fm_head.{t}.bias", bias)
    for name, value in arrays.items():
        np.save(out / f"{name}.npy", value, allow_pickle=False)
    layout = {"format": FORMAT, "tasks": list(s.tasks), "fm": bool(s.fm), "numeric_buckets": bool(s.numeric_buckets),
              "linear_keys": linear_keys, "experts": len(model.experts),
              "task_experts": {t: len(nets) for t, nets in task_experts.items()},
              "fm_tasks": list(model.fm_heads), "fm_into_experts": bool(s.fm and s.fm_into_experts),
              "arrays": sorted(arrays)}
    (out / LAYOUT).write_text(json.dumps(layout, indent=1))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class NumpyTeacher:
    """The teacher's forward pass for one request's inputs (the SavedModel signature's).

    The arithmetic is MMoERanker.call's, arranged for one user × n candidates: every input
    column is either the user's (1 row) or the candidate's (n rows), so each first layer
    (all experts' and gates' first Dense layers side by side, one matmul) splits into the
    user's rows of its kernel, computed once, plus the candidates'; the FM sums likewise
    (Σ_f v_f and Σ_f v_f² over the user's fields once). With one row per candidate for the
    user as well (training frames), the same code broadcasts nothing and gives the same result.
    """

    def __init__(self, layout: dict, arrays: dict[str, np.ndarray], inputs: Layout) -> None:
        self.layout, self.a = layout, arrays
        a = arrays
        # the input fields' names, in the signature's order (the encoder's layout)
        self._user_cat = list(inputs.user_categorical)
        self._row_cat = list(inputs.row_categorical)
        self._bags = list(inputs.bags)
        self.tasks: list[str] = layout["tasks"]
        self.d = a["user_num_v"].shape[1]
        self.n_user_num, self.n_row_num = a["user_num_v"].shape[0], a["row_num_v"].shape[0]
        # the candidate fields' tables end to end, so one gather looks up every field
        self._row_tables = np.concatenate([a[f"emb.{k}"] for k in self._row_cat])
        self._row_offsets = np.cumsum([0, *(len(a[f"emb.{k}"]) for k in self._row_cat)])[:-1]
        self._fm_tasks = set(layout.get("fm_tasks", self.tasks if layout["fm"] else []))
        # first-order terms only where a logit reads them (older versions exported unused ones)
        self._linear_keys = list(layout["linear_keys"]) if self._fm_tasks else []
        self._row_first = {k: np.concatenate([a[f"first.{k}.{name}"] for name in self._row_cat])
                           for k in self._linear_keys}
        user_idx, row_idx = self._x_columns()
        # every first Dense layer reading x (experts' and gates'), side by side
        self._first_names: list[tuple[str, int]] = []
        kernels, biases = [], []
        groups = [("shared", layout["experts"]), *layout["task_experts"].items()]
        self._rest: dict[str, list[list[tuple[np.ndarray, np.ndarray]]]] = {}
        for group, count in groups:
            self._rest[group] = []
            for i in range(count):
                kernels.append(a[f"expert.{group}.{i}.0.kernel"])
                biases.append(a[f"expert.{group}.{i}.0.bias"])
                self._first_names.append((f"{group}.{i}", kernels[-1].shape[1]))
                layers, j = [], 1
                while f"expert.{group}.{i}.{j}.kernel" in a:
                    layers.append((a[f"expert.{group}.{i}.{j}.kernel"], a[f"expert.{group}.{i}.{j}.bias"]))
                    j += 1
                self._rest[group].append(layers)
        for t in self.tasks:
            kernels.append(a[f"gate.{t}.kernel"])
            biases.append(a[f"gate.{t}.bias"])
            self._first_names.append((f"gate.{t}", kernels[-1].shape[1]))
        kernel = np.concatenate(kernels, axis=1)
        self._k_user, self._k_row, self._b = kernel[user_idx], kernel[row_idx], np.concatenate(biases)
        # `fm_into_experts`: x ends with the bi-interaction vector (one per candidate)
        self._fm_into_experts = bool(layout.get("fm_into_experts", False))
        self._k_bi = kernel[len(user_idx) + len(row_idx):] if self._fm_into_experts else None
        if layout["fm"]:
            self._v_user, self._v_row = a["user_num_v"], a["row_num_v"]
            self._v2_user, self._v2_row = self._v_user * self._v_user, self._v_row * self._v_row
            self._num_k = {k: (a[f"num_linear.{k}.kernel"][:self.n_user_num],
                               a[f"num_linear.{k}.kernel"][self.n_user_num:]) for k in self._linear_keys}

    def _x_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions in MMoERanker's x of the user's and the candidates' columns, in the order
        `forward` builds them: x = [user fields, candidate fields, bags, (user buckets, candidate
        buckets), user numerics, candidate numerics] (fields d wide)."""
        d, nu, nr = self.d, len(self._user_cat), len(self._row_cat)
        u, r = self.n_user_num, self.n_row_num
        at, user, row = 0, [], []

        def take(side: list, width: int) -> None:
            nonlocal at
            side.append(np.arange(at, at + width))
            at += width

        take(user, nu * d)
        take(row, nr * d)
        take(user, len(self._bags) * d)
        if self.layout["numeric_buckets"]:
            take(user, u * d)
            take(row, r * d)
        take(user, u)
        take(row, r)
        return np.concatenate(user), np.concatenate(row)

    @classmethod
    def load(cls, directory: Path, inputs: Layout) -> NumpyTeacher | None:
        """The arrays under `directory/arrays` for a teacher over `inputs`, or None when the
        version has none (older versions)."""
        root = Path(directory) / DIRECTORY
        if not (root / LAYOUT).exists():
            return None
        layout = json.loads((root / LAYOUT).read_text())
        if layout.get("format") != FORMAT:
            raise ValueError(f"teacher arrays format {layout.get('format')!r}, this code reads {FORMAT}")
        arrays = {name: np.load(root / f"{name}.npy", allow_pickle=False) for name in layout["arrays"]}
        return cls(layout, arrays, inputs)

    def forward(self, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"p_<task>": float32 [n]} for the signature's inputs (user inputs with 1 or n rows)."""
        a, lay = self.a, self.layout
        row_cat = np.asarray(f["row_cat"])
        user_cat = np.asarray(f["user_cat"])
        n, m = len(row_cat), len(user_cat)
        user_num = np.asarray(f["user_num"], dtype=np.float32)
        row_num = np.asarray(f["row_num"], dtype=np.float32)
        # user side: m rows
        u_fields = [a[f"emb.{name}"][user_cat[:, j]] for j, name in enumerate(self._user_cat)]
        u_fields += [np.einsum("mbd,mb->md", a[f"emb.{bag}"][np.asarray(f[f"{bag}_bag"])],
                               np.asarray(f[f"{bag}_bag_weights"], dtype=np.float32)) for bag in self._bags]
        u_stack = np.stack(u_fields, axis=1)                                      # [m, 7, d]
        r_stack = self._row_tables[row_cat + self._row_offsets]                   # [n, 7, d]
        nu = len(self._user_cat)
        u_parts = [u_stack[:, :nu].reshape(m, -1), u_stack[:, nu:].reshape(m, -1)]
        r_parts = [r_stack.reshape(n, -1)]
        if lay["numeric_buckets"]:
            u_bucket = a["buckets.user"][np.asarray(f["user_bucket"])]           # [m, U, d]
            r_bucket = a["buckets.row"][np.asarray(f["row_bucket"])]             # [n, R, d]
            u_parts.append(u_bucket.reshape(m, -1))
            r_parts.append(r_bucket.reshape(n, -1))
        if lay["fm"]:
            s_user = u_stack.sum(axis=1) + user_num @ self._v_user                # Σ_f v_f, the user's fields
            q_user = (u_stack * u_stack).sum(axis=1) + (user_num * user_num) @ self._v2_user   # Σ_f v_f²
            s_row = r_stack.sum(axis=1) + row_num @ self._v_row
            q_row = (r_stack * r_stack).sum(axis=1) + (row_num * row_num) @ self._v2_row
            if lay["numeric_buckets"]:
                s_user, s_row = s_user + u_bucket.sum(axis=1), s_row + r_bucket.sum(axis=1)
                q_user = q_user + (u_bucket * u_bucket).sum(axis=1)
                q_row = q_row + (r_bucket * r_bucket).sum(axis=1)
            s = s_user + s_row
            bi = 0.5 * (s * s - q_user - q_row)                                    # [n, d]
            first = {}
            for k in self._linear_keys:
                user_first = sum(a[f"first.{k}.{name}"][user_cat[:, j]] for j, name in enumerate(self._user_cat))
                first[k] = (user_first + self._row_first[k][row_cat + self._row_offsets].sum(axis=1)
                            + user_num @ self._num_k[k][0] + row_num @ self._num_k[k][1] + a[f"num_linear.{k}.bias"][0])
        x_user = np.concatenate([*u_parts, user_num], axis=1)
        x_row = np.concatenate([*r_parts, row_num], axis=1)
        pre = x_row @ self._k_row + (x_user @ self._k_user + self._b)            # [n, all first layers]
        if self._fm_into_experts:
            pre = pre + bi @ self._k_bi
        first_out: dict[str, np.ndarray] = {}
        at = 0
        for name, width in self._first_names:
            first_out[name] = pre[:, at:at + width]
            at += width
        experts: dict[str, list[np.ndarray]] = {}
        for group, nets in self._rest.items():
            outs = []
            for i, layers in enumerate(nets):
                h = np.maximum(first_out[f"{group}.{i}"], 0.0)
                for kernel, bias in layers:
                    h = np.maximum(h @ kernel + bias, 0.0)
                outs.append(h)
            experts[group] = outs
        out: dict[str, np.ndarray] = {}
        for t in self.tasks:
            pool = np.stack(experts["shared"] + experts.get(t, []), axis=1)       # [n, E (+ own), u]
            gate = _softmax(first_out[f"gate.{t}"])
            h = np.einsum("neu,ne->nu", pool, gate)
            j = 0
            while f"tower.{t}.{j + 1}.kernel" in a:
                h = np.maximum(h @ a[f"tower.{t}.{j}.kernel"] + a[f"tower.{t}.{j}.bias"], 0.0)
                j += 1
            logit = (h @ a[f"tower.{t}.{j}.kernel"] + a[f"tower.{t}.{j}.bias"])[:, 0]
            if t in self._fm_tasks:
                head = bi @ a[f"fm_head.{t}.kernel"] + a[f"fm_head.{t}.bias"][0]
                logit = logit + head + first[t if t in first else ""]
            out[f"p_{t}"] = _sigmoid(logit).astype(np.float32)
        return out
