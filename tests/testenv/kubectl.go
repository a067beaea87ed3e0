package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

// runKubectl is kubectl itself, from the same pinned Kubernetes as the
// control plane, so that tests can build the Kustomize overlays and apply
// them (`kubectl kustomize`, `kubectl apply --dry-run=server`) on a machine
// without a kubectl of its own. kubectl.sh runs it with the testenv
// kubeconfig.
func runKubectl(args []string) error {
	// kubectl reads its arguments from os.Args, as its own main does.
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		// Prints the error as kubectl does and exits non-zero.
		util.CheckErr(err)
	}
	return nil
}
