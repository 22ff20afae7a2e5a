"""The workflow's vocabulary: params.yaml mapping, results layout, MLflow, SLURM checks.

Torch-free and low in the house (it imports only gnerv.runtime), so that the Snakefile, the DVC
generator and every room can ask it for a name or a path.
"""
