package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// runCRDs installs the CustomResourceDefinitions in the given YAML files (one
// CRD a file, as `mcp-operator crds --out-dir` writes them) by server-side
// apply and waits until each is Established, so that `make testenv` leaves a
// cluster where `kubectl get mcpservers` works at once.
func runCRDs(args []string) error {
	flags := flag.NewFlagSet("crds", flag.ExitOnError)
	dir := flags.String("dir", "", "state directory written by `testenv apiserver`")
	if err := flags.Parse(args); err != nil {
		return err
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath(*dir))
	if err != nil {
		return err
	}
	client, err := apiextensions.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	force := true
	var names []string
	for _, path := range flags.Args() {
		if filepath.Ext(path) != ".yaml" || filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		manifest, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(manifest, &crd); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		body, err := yaml.YAMLToJSON(manifest)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		_, err = client.ApiextensionsV1().CustomResourceDefinitions().Patch(ctx, crd.Name, types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: "testenv", Force: &force})
		if err != nil {
			return fmt.Errorf("applying %s: %w", path, err)
		}
		names = append(names, crd.Name)
	}
	for _, name := range names {
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			crd, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, condition := range crd.Status.Conditions {
				if condition.Type == apiextensionsv1.Established && condition.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s did not become Established: %w", name, err)
		}
	}
	return nil
}
