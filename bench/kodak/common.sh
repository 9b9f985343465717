# Sourced by the Kodak study's scripts (run.sh, chains.sh, spikes.sh, latent_channels.sh), from the project's root.
# results_of FILE: the results_dir that a params file or an overlay names.
results_of() { .venv/bin/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["results_dir"])' "$1"; }
