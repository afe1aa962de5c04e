package main

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/internal/qr"
)

// decodeTerminalQR reads the QR code that 'kanal safety-number' drew in
// the terminal back into an image and decodes it. The drawing
// (go-qrcode's ToSmallString(false)) puts two module rows in a line of
// characters, dark modules as spaces, and includes the 4-module quiet
// zone. A QR code has an odd number of rows, so the last line holds one
// row only: its '▀' is a light module over the terminal's background, not
// a light module over a dark one. Reading that line as two rows added a
// dark bar under the code, which made the decoder miss about one code in
// 200 (17 of 3,000 random safety numbers). The image is now exactly the
// drawn modules, checked to be square, and decoded with PURE_BARCODE: it
// is a clean, upright, whole code, which zxing then reads module by module
// instead of searching for finder patterns (0 of 3,000 missed).
func decodeTerminalQR(t *testing.T, lines []string) string {
	t.Helper()
	var rows [][]bool // true: dark module
	for i, l := range lines {
		last := i == len(lines)-1
		var top, bottom []bool
		for _, r := range l {
			switch r {
			case ' ':
				top, bottom = append(top, true), append(bottom, true)
			case '█':
				top, bottom = append(top, false), append(bottom, false)
			case '▄':
				if last {
					t.Fatalf("%q in the last line of the QR code, which holds one row", r)
				}
				top, bottom = append(top, true), append(bottom, false)
			case '▀':
				top, bottom = append(top, false), append(bottom, true)
			default:
				t.Fatalf("unexpected %q in the QR code", r)
			}
		}
		rows = append(rows, top)
		if !last {
			rows = append(rows, bottom)
		}
	}
	w := len(rows[0])
	for _, row := range rows {
		if len(row) != w || len(rows) != w {
			t.Fatalf("the QR code drawn in the terminal is not square: %d rows, a row of %d modules, the first of %d", len(rows), len(row), w)
		}
	}
	// The rows hold the terminal's quiet zone; qr.PNG draws them with
	// one more around.
	b, err := qr.PNG(rows, 4)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return decodeQRImage(t, img)
}

// decodeQRImage decodes a QR code image that holds one clean, upright
// code and its quiet zone, as kanal draws or renders it.
func decodeQRImage(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("decode the QR code: %v", err)
	}
	return res.GetText()
}

// safetyOutput reads a 'kanal safety-number' output file: the 60 digits
// printed and the payload of the QR code under them.
func safetyOutput(t *testing.T, path string) (digits, payload string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	num := regexp.MustCompile(`^    (\d{5} ){5}\d{5}$`)
	var qr []string
	for i := 0; i < len(lines); i++ {
		if num.MatchString(lines[i]) {
			digits += strings.ReplaceAll(strings.TrimSpace(lines[i]), " ", "")
			continue
		}
		if digits != "" && len(digits) == 60 && lines[i] != "" && strings.ContainsAny(lines[i], "█▀▄") {
			for ; i < len(lines) && lines[i] != ""; i++ {
				qr = append(qr, lines[i])
			}
			break
		}
	}
	if len(digits) != 60 || len(qr) == 0 {
		t.Fatalf("no safety number and QR code in:\n%s", b)
	}
	return digits, decodeTerminalQR(t, qr)
}

// TestContactVerifyCLI: Alice and Bob compare safety numbers (the same 60
// digits on both sides, and a QR code that scans to them), Alice marks
// Bob verified; when Bob adds a phone, Alice's next send stops until she
// verifies him again.
func TestContactVerifyCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := &session{t: t, work: t.TempDir(), vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	s.run(append(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	s.run([]step{
		{cmd: "kanal contact show $BOB", want: []string{"$BOB: not verified", "no device keys met yet"}},
		{cmd: "kanal send $BOB 'Hallo Bob'", want: []string{"sent"}},
		{cmd: "kanal contact show $BOB", want: []string{"$BOB: not verified", "device "}},
		{cmd: "kanal safety-number $BOB > alice-sn.txt"},
		// Bob has not met Alice's key yet: it is fetched.
		{home: "bob", cmd: "kanal safety-number $ALICE > bob-sn.txt"},
		{do: func(t *testing.T) {
			ad, ap := safetyOutput(t, filepath.Join(s.work, "alice-sn.txt"))
			bd, bp := safetyOutput(t, filepath.Join(s.work, "bob-sn.txt"))
			if ad != bd {
				t.Fatalf("Alice sees %s, Bob %s", ad, bd)
			}
			if ap != "KANAL-SN1:"+ad || bp != ap {
				t.Fatalf("QR payloads %q and %q, want KANAL-SN1:%s", ap, bp, ad)
			}
		}},
		{cmd: "kanal contact verify $BOB", want: []string{"Verified $BOB: 1 device."}},
		{cmd: "kanal contact show $BOB", want: []string{"$BOB: verified"}, not: []string{"KEY CHANGED"}},
		{cmd: "kanal safety-number $BOB", want: []string{"$BOB is verified."}},
		{cmd: "kanal send $BOB 'Geprüft'", want: []string{"sent"}},
		// Bob adds a phone: Alice's next send stops.
		{home: "bobphone", cmd: "kanal device request > bobphone.csr"},
		{home: "bob", cmd: "kanal device approve --name phone bobphone.csr > bobphone.pem",
			set: map[string]string{"BOBPHONE": `Approved device (\S+) `}},
		{home: "bobphone", cmd: "kanal device install bobphone.pem"},
		{home: "bobphone", cmd: "kanal login"},
		{cmd: "kanal send $BOB 'An beide'", exit: 1, want: []string{"$BOB has a new device ($BOBPHONE) since you verified them",
			"not sent", "kanal contact verify $BOB"}},
		{cmd: "kanal send $BOB 'An beide'", exit: 1, want: []string{"not sent"}},
		{cmd: "kanal contact show $BOB", want: []string{"$BOB: verified", "device $BOBPHONE", "KEY CHANGED OR NEW SINCE VERIFIED"}},
		{cmd: "kanal contact verify $BOB", want: []string{"Verified $BOB: 2 devices."}},
		{cmd: "kanal send $BOB 'An beide'", want: []string{"sent"}},
		{home: "bobphone", cmd: "kanal inbox", want: []string{"An beide"}},
		{cmd: "kanal contact unverify $BOB", want: []string{"$BOB is no longer verified."}},
		{cmd: "kanal contact show $BOB", want: []string{"$BOB: not verified"}},
		// Bad input.
		{cmd: "kanal contact verify bob@example.org", exit: 2, want: []string{"is not an account id"}},
		{cmd: "kanal contact verify acc_nobodyhere", exit: 1},
		{cmd: "kanal safety-number", exit: 2},
	})
}
