package vault_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/vault"
)

// WeedEnv names the variable holding the path of a SeaweedFS weed binary;
// .ci/run builds one. Without it the S3 variants are skipped.
const WeedEnv = "KANAL_TEST_WEED"

const (
	weedAccessKey = "kanal-test"
	weedSecretKey = "kanal-test-secret-0123456789"
)

// weed is the one SeaweedFS server of this test binary: started on first
// use on free loopback ports, stopped by TestMain.
var weed struct {
	once sync.Once
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has been waited for
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if weed.cmd != nil {
		weed.cmd.Process.Kill()
		<-weed.done
	}
	if weed.dir != "" {
		os.RemoveAll(weed.dir)
	}
	os.Exit(code)
}

// freePort returns a loopback port that is free, and free 10000 above
// too (where weed puts a server's gRPC port).
func freePort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+10000 > 65535 {
			continue
		}
		if l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000)); err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port pair")
}

// startWeed starts SeaweedFS with its S3 gateway and waits until a bucket
// can be made. Its ports are picked free and then handed over, so another
// process may take one in between (weed then exits: "bind: address
// already in use"); it is started again on fresh ports, up to three times.
func startWeed(bin string) (string, error) {
	dir, err := os.MkdirTemp("", "kanal-weed-")
	if err != nil {
		return "", err
	}
	weed.dir = dir
	cfg := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfg, []byte(`{"identities":[{"name":"kanal","credentials":[{"accessKey":"`+weedAccessKey+
		`","secretKey":"`+weedSecretKey+`"}],"actions":["Admin","Read","Write","List","Tagging"]}]}`), 0o600); err != nil {
		return "", err
	}
	for try := 1; ; try++ {
		url, exited, err := runWeed(bin, dir, cfg, try)
		if err == nil || !exited || try == 3 {
			return url, err
		}
	}
}

// runWeed starts weed once, in data directory try of dir, and waits until
// it is ready; exited says whether weed ended before that.
func runWeed(bin, dir, cfg string, try int) (url string, exited bool, err error) {
	ports := map[string]int{}
	taken := map[int]bool{}
	for _, name := range []string{"master", "volume", "filer", "s3"} {
		p, err := freePort()
		if err != nil {
			return "", false, err
		}
		if taken[p] || taken[p+10000] {
			return "", true, fmt.Errorf("port %d picked twice", p)
		}
		taken[p], taken[p+10000] = true, true
		ports[name] = p
	}
	data := filepath.Join(dir, "data"+strconv.Itoa(try))
	os.MkdirAll(data, 0o700)
	cmd := exec.Command(bin, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir="+data,
		"-master.port="+strconv.Itoa(ports["master"]), "-volume.port="+strconv.Itoa(ports["volume"]),
		"-filer.port="+strconv.Itoa(ports["filer"]), "-master.volumeSizeLimitMB=64", "-volume.max=0",
		"-s3", "-s3.port="+strconv.Itoa(ports["s3"]), "-s3.config="+cfg)
	logPath := filepath.Join(dir, "weed"+strconv.Itoa(try)+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return "", false, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return "", false, err
	}
	done := make(chan struct{})
	weed.cmd, weed.done = cmd, done
	go func() { cmd.Wait(); close(done) }()
	url = "http://127.0.0.1:" + strconv.Itoa(ports["s3"])
	// Ready when a bucket can be made: the S3 gateway answers before the
	// filer and volume servers behind it are up.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := vault.NewS3Blobs(ctx, vault.S3Options{URL: url + "/ready", AccessKey: weedAccessKey, SecretKey: weedSecretKey})
		cancel()
		if err == nil {
			return url, false, nil
		}
		select {
		case <-done:
			return "", true, fmt.Errorf("weed exited before it was ready: %v\n%s", err, logTail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			return "", false, fmt.Errorf("weed did not come up: %v\n%s", err, logTail(logPath))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// logTail is the last 4,000 bytes of a log file.
func logTail(path string) []byte {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return b
}

func s3Blobs(t testing.TB) *vault.S3Blobs {
	t.Helper()
	bin := os.Getenv(WeedEnv)
	if bin == "" {
		t.Skipf("%s not set: the S3 variant needs a SeaweedFS weed binary", WeedEnv)
	}
	weed.once.Do(func() { weed.url, weed.err = startWeed(bin) })
	if weed.err != nil {
		t.Fatal(weed.err)
	}
	var b [6]byte
	rand.Read(b[:])
	s, err := vault.NewS3Blobs(context.Background(), vault.S3Options{URL: weed.url + "/kanal-" + hex.EncodeToString(b[:]),
		AccessKey: weedAccessKey, SecretKey: weedSecretKey, Transport: http.DefaultTransport})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
