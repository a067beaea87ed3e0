package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	controllermanagerapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// controllers are the kube-controller-manager controllers that mcp-operator's
// tests rely on: Deployments get ReplicaSets and Pods, owners garbage-collect
// their dependents, namespaces get their default ServiceAccount and delete
// cleanly, Services get EndpointSlices, PodDisruptionBudgets get status, and
// nodes lose the not-ready taint (added on registration) once kwok marks them
// Ready, and pods on the real node find the cluster's CA.
var controllers = []string{
	"garbage-collector-controller",
	"deployment-controller",
	"replicaset-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"namespace-controller",
	"endpointslice-controller",
	"disruption-controller",
	"node-lifecycle-controller",
	// kube-root-ca.crt in every namespace: a real pod with a
	// service-account token (the operator's) waits for it.
	"root-ca-certificate-publisher-controller",
	// Endpoints, which the apiserver's service proxy (clients reaching a
	// Service on the real node) still resolves Services by.
	"endpoints-controller",
}

type componentFlags struct {
	dir  string
	port int
}

func parseComponentFlags(name string, defaultPort int, args []string) (*componentFlags, error) {
	flags := flag.NewFlagSet(name, flag.ExitOnError)
	f := &componentFlags{}
	flags.StringVar(&f.dir, "dir", "", "state directory written by `testenv apiserver`")
	flags.IntVar(&f.port, "port", defaultPort, "secure port for the component's health endpoints")
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	if f.dir == "" {
		return nil, fmt.Errorf("--dir is required")
	}
	return f, nil
}

func runControllerManager(args []string) error {
	f, err := parseComponentFlags("controller-manager", 16446, args)
	if err != nil {
		return err
	}
	p, err := ensurePKI(f.dir)
	if err != nil {
		return err
	}
	return execute(controllermanagerapp.NewControllerManagerCommand(), []string{
		"--kubeconfig=" + kubeconfigPath(f.dir),
		"--authentication-kubeconfig=" + kubeconfigPath(f.dir),
		"--authorization-kubeconfig=" + kubeconfigPath(f.dir),
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", f.port),
		"--service-account-private-key-file=" + p.SAPrivateKey,
		"--root-ca-file=" + p.CACert,
		"--use-service-account-credentials=false",
		"--profiling=false",
		// The defaults (20 QPS, burst 30) take minutes to roll out the load
		// test's 1,000 Deployments; the operator, not this client's rate
		// limit, is what the tests measure.
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
	})
}

func runScheduler(args []string) error {
	f, err := parseComponentFlags("scheduler", 16447, args)
	if err != nil {
		return err
	}
	return execute(schedulerapp.NewSchedulerCommand(), []string{
		"--kubeconfig=" + kubeconfigPath(f.dir),
		"--authentication-kubeconfig=" + kubeconfigPath(f.dir),
		"--authorization-kubeconfig=" + kubeconfigPath(f.dir),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", f.port),
		"--profiling=false",
		// As for the controller-manager: 1,000 router pods to bind.
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
	})
}

func execute(cmd *cobra.Command, args []string) error {
	cmd.SetArgs(args)
	return cmd.Execute()
}
