#!/usr/bin/env bash
# kubectl against the test environment, without a kubectl installed: the
# testenv binary's `kubectl` subcommand (k8s.io/kubectl, the same version as
# the control plane) with the environment's admin kubeconfig. `testenv.sh up`
# exports this path as TESTENV_KUBECTL.
#
#   tests/testenv/kubectl.sh kustomize manifests/overlays/production
#   tests/testenv/kubectl.sh apply -k manifests/examples
exec "$(dirname "$0")/controlplane.sh" kubectl "$@"
