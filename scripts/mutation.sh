#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut 3 (https://mutmut.readthedocs.io): each
# mutant (an operator, a constant, an argument changed in one place) must make a test fail.
# Not run in CI: it is slow. Each module is mutated in a scratch copy of the repository,
# against a short selection of the tests that exercise it in-process (tests that run the
# `softmax` command in a subprocess import the installed package, not the mutant).
#
#   pip install -e ".[test]"           # includes mutmut 3.x; see docs/testing.md
#   nice -n 5 scripts/mutation.sh                  # every module below
#   nice -n 5 scripts/mutation.sh optim schedules  # some of them
#
# Prints, per module, the counts of killed and surviving mutants and the score, and lists
# the survivors (`mutmut show NAME` in the scratch folder printed shows one). The numba
# kernels (@njit) are not mutated by mutmut (it skips decorated functions); their NumPy
# formulas are tested against them in tests/test_kernels.py.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
children=${MUTATION_CHILDREN:-2}

declare -A FILES TESTS
FILES[nn]="softmax_cli/nn/functional.py softmax_cli/nn/mlp.py softmax_cli/nn/gradcheck.py softmax_cli/nn/__init__.py"
R=tests/test_regularization.py
TESTS[nn]="tests/test_math.py tests/test_kernels.py $R::test_dropout_is_off_at_evaluation_and_inverted_in_training $R::test_gradcheck_passes_with_label_smoothing_and_with_fixed_dropout_masks $R::test_dropout_needs_an_rng_and_matching_buffers $R::test_label_smoothing_is_cross_entropy_against_smoothed_targets_with_gradient_a_minus_y $R::test_max_norm_caps_each_units_incoming_weights_and_leaves_the_rest tests/test_mutation_kills.py"
FILES[optim]="softmax_cli/optim.py"
TESTS[optim]="tests/test_optim.py $R::test_adamw_follows_algorithm_2_and_differs_from_adam_with_l2_as_the_paper_says tests/test_mutation_kills.py"
FILES[schedules]="softmax_cli/schedules.py"
TESTS[schedules]="tests/test_regularization.py::test_each_schedules_learning_rate_sequence tests/test_mutation_kills.py"
FILES[images]="softmax_cli/data/images.py softmax_cli/data/ink.py"
TESTS[images]="tests/test_data.py tests/test_photos.py tests/test_mutation_kills.py"
ORDER=(optim schedules nn images)

modules=("$@")
[ ${#modules[@]} -eq 0 ] && modules=("${ORDER[@]}")
for m in "${modules[@]}"; do
    [ -n "${FILES[$m]:-}" ] || { echo "mutation.sh: unknown module $m (one of: ${ORDER[*]})" >&2; exit 2; }
done

for m in "${modules[@]}"; do
    work=$(mktemp -d "${TMPDIR:-/tmp}/softmax-mutation-$m.XXXXXX")
    cp -r "$repo/softmax_cli" "$repo/tests" "$repo/configs" "$repo/data" "$repo/pyproject.toml" "$work/"
    find "$work" -name __pycache__ -prune -exec rm -rf {} +
    # mutmut reads [mutmut] from setup.cfg (pyproject.toml has no [tool.mutmut]); list values one a line
    {
        echo "[mutmut]"
        echo "source_paths = softmax_cli"
        echo "also_copy ="; for f in configs data; do echo "    $f"; done
        echo "only_mutate ="; for f in ${FILES[$m]}; do echo "    $f"; done
        echo "pytest_add_cli_args ="; for a in -n 0 -p no:cacheprovider -x -q; do echo "    $a"; done
        echo "pytest_add_cli_args_test_selection ="; for t in ${TESTS[$m]}; do echo "    $t"; done
    } > "$work/setup.cfg"
    echo "== $m: ${FILES[$m]} (scratch copy: $work)"
    (cd "$work" && mutmut run --max-children "$children" > mutmut-run.log 2>&1) || {
        tail -20 "$work/mutmut-run.log"; echo "mutation.sh: mutmut failed for $m" >&2; exit 1; }
    (cd "$work" && mutmut results --all true > results.txt 2>&1 || true)
    python3 - "$m" "$work/results.txt" <<'PY'
import collections, sys
module, path = sys.argv[1], sys.argv[2]
status = {}
for line in open(path):
    if ":" in line and "__mutmut_" in line:
        name, _, verdict = line.strip().rpartition(":")
        status[name.strip()] = verdict.strip()
counts = collections.Counter(status.values())
killed = counts.get("killed", 0) + counts.get("timeout", 0)
total = sum(counts.values())
print(f"{module}: {total} mutants, {dict(counts)}; killed {killed}/{total} = {100 * killed / max(total, 1):.1f}%")
for name, verdict in sorted(status.items()):
    if verdict not in ("killed", "timeout"):
        print(f"  {verdict}: {name}")
PY
    if [ -n "${MUTATION_SHOW:-}" ]; then      # the diff of each survivor
        grep "__mutmut_" "$work/results.txt" | grep -v ": killed$\|: timeout$" | cut -d: -f1 | while read -r name; do
            (cd "$work" && mutmut show "$name" 2>&1 | sed 's/^/    /')
        done
    fi
done
