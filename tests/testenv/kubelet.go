package main

import (
	"context"

	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
)

// runKubelet is the kubelet of the testenv's one real node (node.sh), from
// the same pinned Kubernetes as the control plane. node.sh writes its
// configuration and passes every flag.
func runKubelet(args []string) error {
	return execute(kubeletapp.NewKubeletCommand(context.Background()), args)
}
