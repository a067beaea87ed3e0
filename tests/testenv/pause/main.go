// Command pause is the sandbox ("pause") container of the testenv's real
// node: it holds a pod's namespaces and does nothing until it is stopped.
// No registry is reachable, so node.sh builds it into a FROM-scratch image
// of its own for containerd's sandbox_image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
