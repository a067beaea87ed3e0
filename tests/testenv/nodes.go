package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// kwokNodeAnnotation marks the nodes that kwok manages (kwok is started with
// --manage-nodes-with-annotation-selector on it).
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// runNodes registers fake nodes for kwok and waits until they are schedulable:
// kwok reports them Ready and the node lifecycle controller has lifted the
// not-ready taint. They carry no taint of their own, so that the operator's Deployments schedule onto
// them without tolerations.
func runNodes(args []string) error {
	flags := flag.NewFlagSet("nodes", flag.ExitOnError)
	dir := flags.String("dir", "", "state directory written by `testenv apiserver`")
	count := flags.Int("count", 3, "number of fake nodes")
	if err := flags.Parse(args); err != nil {
		return err
	}
	client, err := adminClient(*dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	capacity := corev1.ResourceList{
		// Room for the load test's 1,000 router pods; kwok runs none of
		// them, so capacity costs nothing.
		corev1.ResourceCPU:    resource.MustParse("256"),
		corev1.ResourceMemory: resource.MustParse("1Ti"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	for i := range *count {
		name := fmt.Sprintf("kwok-node-%d", i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{kwokNodeAnnotation: "fake"},
				Labels: map[string]string{
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					"type":                   "kwok",
				},
			},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		_, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
	}
	return wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		schedulable := 0
		for _, node := range nodes.Items {
			if len(node.Spec.Taints) > 0 {
				continue
			}
			for _, condition := range node.Status.Conditions {
				if condition.Type == corev1.NodeReady && condition.Status == corev1.ConditionTrue {
					schedulable++
				}
			}
		}
		return schedulable >= *count, nil
	})
}
