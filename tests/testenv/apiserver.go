package main

import (
	"flag"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// runAPIServer starts embedded etcd, then kube-apiserver against it, in this
// process. It returns only when the apiserver stops.
func runAPIServer(args []string) error {
	flags := flag.NewFlagSet("apiserver", flag.ExitOnError)
	dir := flags.String("dir", "", "state directory (PKI, etcd data, kubeconfig)")
	port := flags.Int("port", 16443, "apiserver secure port on 127.0.0.1")
	etcdPort := flags.Int("etcd-port", 0, "etcd client port on 127.0.0.1, peer port is one above (default: port+1)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	if *etcdPort == 0 {
		*etcdPort = *port + 1
	}
	p, err := ensurePKI(*dir)
	if err != nil {
		return fmt.Errorf("generating PKI: %w", err)
	}
	etcd, err := startEtcd(filepath.Join(*dir, "etcd"), *etcdPort)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()
	if err := writeKubeconfig(*dir, *port, p); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return execute(apiserverapp.NewAPIServerCommand(), []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", *etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", *port),
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CACert,
		"--token-auth-file=" + p.TokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.SAPublicKey,
		"--service-account-signing-key-file=" + p.SAPrivateKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// The real node's kubelet serves logs, exec and port-forward on
		// its node IP; kubelets refuse loopback.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		// A namespace's annotations steer its pods onto the real node
		// (scheduler.alpha.kubernetes.io/node-selector and
		// .../defaultTolerations): node.sh documents them.
		"--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
		"--profiling=false",
		"--cert-dir=" + filepath.Join(*dir, "certs"),
	})
}

// startEtcd runs a single-member etcd in this process. fsync is off: the data
// is disposable and tests are dominated by write latency otherwise.
func startEtcd(dataDir string, clientPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dataDir
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort+1)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peerURL.String())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after 60s")
	}
}
