package main

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const contextName = "mcp-operator-testenv"

func kubeconfigPath(dir string) string { return filepath.Join(dir, "kubeconfig") }

// adminClient is a client of the apiserver, as the admin of the kubeconfig
// `testenv apiserver` wrote in dir.
func adminClient(dir string) (*kubernetes.Clientset, error) {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath(dir))
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(config)
}

// writeKubeconfig writes an admin kubeconfig with the CA embedded, so that it
// can be copied anywhere and still work.
func writeKubeconfig(dir string, port int, p *pki) error {
	ca, err := os.ReadFile(p.CACert)
	if err != nil {
		return err
	}
	config := clientcmdapi.NewConfig()
	config.Clusters[contextName] = &clientcmdapi.Cluster{
		Server:                   fmt.Sprintf("https://127.0.0.1:%d", port),
		CertificateAuthorityData: ca,
	}
	config.AuthInfos[contextName] = &clientcmdapi.AuthInfo{Token: p.Token}
	config.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName}
	config.CurrentContext = contextName
	return clientcmd.WriteToFile(*config, kubeconfigPath(dir))
}
