// Command testenv runs a real Kubernetes control plane for mcp-operator's
// tests: embedded etcd and kube-apiserver in one process, and
// kube-controller-manager and kube-scheduler each re-executed from this same
// binary, so that the components are built from one pinned k8s.io/kubernetes.
//
// Usage:
//
//	testenv apiserver --dir DIR --port PORT [--etcd-port PORT]
//	testenv controller-manager --dir DIR [--port PORT]
//	testenv scheduler --dir DIR [--port PORT]
//	testenv nodes --dir DIR [--count N]
//	testenv crds --dir DIR FILE...
//	testenv kubectl ARGS...
//	testenv kubelet ARGS...
//	testenv proxy --dir DIR --listen NODE-IP [--forward PORT=HOST:PORT]...
//
// DIR holds the generated PKI, the admin token and the kubeconfig that every
// other subcommand (and the tests) use.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "apiserver":
		err = runAPIServer(os.Args[2:])
	case "controller-manager":
		err = runControllerManager(os.Args[2:])
	case "scheduler":
		err = runScheduler(os.Args[2:])
	case "nodes":
		err = runNodes(os.Args[2:])
	case "crds":
		err = runCRDs(os.Args[2:])
	case "kubectl":
		err = runKubectl(os.Args[2:])
	case "kubelet":
		err = runKubelet(os.Args[2:])
	case "proxy":
		err = runProxy(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testenv apiserver|controller-manager|scheduler|nodes|crds|proxy --dir DIR [flags] | kubectl|kubelet ARGS...")
	os.Exit(2)
}
