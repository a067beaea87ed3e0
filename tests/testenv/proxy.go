package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// clusterZone is the kubelet's clusterDomain, as node.sh configures it.
const clusterZone = "svc.cluster.local."

// runProxy serves the real node's pods what kube-proxy and cluster DNS
// serve in a cluster, without touching the host's packet filter (two
// testenvs share that): DNS on the node IP, answering a Service's name
// with its ready endpoints' addresses (so a Service's clients reach its
// pods by name, like a headless Service) and `kubernetes.default` with the
// node IP; and TCP forwards from the node IP to services the control plane
// runs on loopback (the apiserver, Redis), which pods cannot reach there.
func runProxy(args []string) error {
	flags := flag.NewFlagSet("proxy", flag.ExitOnError)
	dir := flags.String("dir", "", "state directory written by `testenv apiserver`")
	listen := flags.String("listen", "", "the node IP: DNS on port 53 and every forward listen there")
	var forwards []string
	flags.Func("forward", "PORT=HOST:PORT, a TCP forward from the node IP's PORT (repeatable)", func(v string) error {
		forwards = append(forwards, v)
		return nil
	})
	if err := flags.Parse(args); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(*listen)
	if err != nil || !ip.Is4() {
		return fmt.Errorf("--listen must be an IPv4 address, not %q", *listen)
	}
	client, err := adminClient(*dir)
	if err != nil {
		return err
	}
	errs := make(chan error, len(forwards)+1)
	for _, forward := range forwards {
		port, target, ok := strings.Cut(forward, "=")
		if !ok {
			return fmt.Errorf("--forward %q is not PORT=HOST:PORT", forward)
		}
		listener, err := net.Listen("tcp", net.JoinHostPort(ip.String(), port))
		if err != nil {
			return err
		}
		go func() { errs <- serveForward(listener, target) }()
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	services := factory.Core().V1().Services().Lister()
	slices := factory.Discovery().V1().EndpointSlices().Lister()
	ctx := context.Background()
	factory.Start(ctx.Done())
	for informer, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			return fmt.Errorf("the %v cache did not sync", informer)
		}
	}
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(ip.String(), "53"))
	if err != nil {
		return err
	}
	resolver := &serviceResolver{nodeIP: ip.As4(), services: services, slices: slices}
	go func() { errs <- resolver.serve(conn) }()
	return <-errs
}

func serveForward(listener net.Listener, target string) error {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			upstream, err := net.DialTimeout("tcp", target, 10*time.Second)
			if err != nil {
				log.Printf("forward to %s: %v", target, err)
				return
			}
			defer upstream.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(upstream, conn); done <- struct{}{} }() // nolint:errcheck
			go func() { io.Copy(conn, upstream); done <- struct{}{} }() // nolint:errcheck
			<-done
		}()
	}
}

type serviceResolver struct {
	nodeIP   [4]byte
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
}

func (r *serviceResolver) serve(conn net.PacketConn) error {
	buf := make([]byte, 1232)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		if reply, ok := r.answer(buf[:n]); ok {
			conn.WriteTo(reply, from) // nolint:errcheck
		}
	}
}

// answer replies to one query; ok is false for what is not a DNS query.
func (r *serviceResolver) answer(query []byte) (reply []byte, ok bool) {
	var parser dnsmessage.Parser
	header, err := parser.Start(query)
	if err != nil {
		return nil, false
	}
	question, err := parser.Question()
	if err != nil {
		return nil, false
	}
	header.Response, header.Authoritative, header.RecursionAvailable = true, true, false
	addresses, found := r.lookup(strings.ToLower(question.Name.String()))
	if !found {
		header.RCode = dnsmessage.RCodeNameError
	}
	builder := dnsmessage.NewBuilder(nil, header)
	builder.EnableCompression()
	if builder.StartQuestions() != nil || builder.Question(question) != nil || builder.StartAnswers() != nil {
		return nil, false
	}
	if question.Type == dnsmessage.TypeA {
		for _, address := range addresses {
			// TTL 0: a deleted pod's address must not outlive it in a cache.
			resource := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 0}
			if builder.AResource(resource, dnsmessage.AResource{A: address}) != nil {
				return nil, false
			}
		}
	}
	reply, err = builder.Finish()
	return reply, err == nil
}

// lookup resolves NAME.NAMESPACE.svc.cluster.local: the ready endpoints of
// that Service, or the node IP for the apiserver's `kubernetes.default`
// (forwarded to it). found is false for a name that is no Service.
func (r *serviceResolver) lookup(name string) (addresses [][4]byte, found bool) {
	service, namespace, ok := strings.Cut(strings.TrimSuffix(name, "."+clusterZone), ".")
	if !ok || !strings.HasSuffix(name, "."+clusterZone) || strings.Contains(namespace, ".") {
		return nil, false
	}
	if service == "kubernetes" && namespace == "default" {
		return [][4]byte{r.nodeIP}, true
	}
	if _, err := r.services.Services(namespace).Get(service); err != nil {
		if !apierrors.IsNotFound(err) {
			log.Printf("looking up Service %s/%s: %v", namespace, service, err)
		}
		return nil, false
	}
	selector := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service})
	slices, err := r.slices.EndpointSlices(namespace).List(selector)
	if err != nil {
		return nil, true
	}
	for _, slice := range slices {
		if slice.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, endpoint := range slice.Endpoints {
			if endpoint.Conditions.Ready != nil && !*endpoint.Conditions.Ready {
				continue
			}
			for _, address := range endpoint.Addresses {
				if ip, err := netip.ParseAddr(address); err == nil && ip.Is4() {
					addresses = append(addresses, ip.As4())
				}
			}
		}
	}
	return addresses, true
}
