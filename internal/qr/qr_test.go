package qr

import (
	"bytes"
	"image/png"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// TestModesAndSizes: a text in the alphanumeric set (a safety number) is
// one alphanumeric segment, anything else one byte segment, and either
// reads back exactly from the PNG with ZXing's detector.
func TestModesAndSizes(t *testing.T) {
	sn := "KANAL-SN1:" + strings.Repeat("0123456789", 6)
	for _, c := range []struct {
		text    string
		modules int // version 4 is 33 modules, 5 is 37
	}{
		{sn, 33},                  // 70 alphanumeric characters fit version 4 at level M
		{strings.ToLower(sn), 37}, // as 70 bytes they need version 5
		{"Bürgeramt\nGebühr", 25}, // 18 UTF-8 bytes: version 2 (version 1 holds 14 at level M)
	} {
		m, err := Modules(c.text)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) != c.modules || len(m[0]) != c.modules {
			t.Errorf("%q: %d×%d modules, want %d", c.text, len(m), len(m[0]), c.modules)
		}
		b, err := PNG(m, 4)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if side := (c.modules + 2*QuietZone) * 4; img.Bounds().Dx() != side || img.Bounds().Dy() != side {
			t.Errorf("%q: the PNG is %v, want %d square", c.text, img.Bounds(), side)
		}
		bmp, err := gozxing.NewBinaryBitmapFromImage(img)
		if err != nil {
			t.Fatal(err)
		}
		res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
		if err != nil {
			t.Fatalf("%q: %v", c.text, err)
		}
		if res.GetText() != c.text {
			t.Errorf("%q reads back as %q", c.text, res.GetText())
		}
	}
	if _, err := PNG([][]bool{{true}}, 0); err == nil {
		t.Error("a PNG of 0 pixels per module")
	}
}

// TestTerminal reads the half blocks back into modules: two rows a line,
// light as the block's colour, the quiet zone around, and the odd last
// row alone.
func TestTerminal(t *testing.T) {
	m, err := Modules("KANAL-SN1:0042")
	if err != nil {
		t.Fatal(err)
	}
	n := len(m) + 2*QuietZone
	lines := strings.Split(strings.TrimSuffix(Terminal(m), "\n"), "\n")
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines for %d rows", len(lines), n)
	}
	light := make([][]bool, n)
	for i := range light {
		light[i] = make([]bool, n)
	}
	for l, line := range lines {
		r := []rune(line)
		if len(r) != n {
			t.Fatalf("line %d holds %d characters, want %d", l, len(r), n)
		}
		for x, c := range r {
			top, bottom := false, false
			switch c {
			case '█':
				top, bottom = true, true
			case '▀':
				top = true
			case '▄':
				bottom = true
			case ' ':
			default:
				t.Fatalf("%q in line %d", c, l)
			}
			light[2*l][x] = top
			if 2*l+1 < n {
				light[2*l+1][x] = bottom
			} else if bottom {
				t.Fatalf("a lower half in the last line, which holds one row")
			}
		}
	}
	for y := range n {
		for x := range n {
			my, mx := y-QuietZone, x-QuietZone
			dark := my >= 0 && my < len(m) && mx >= 0 && mx < len(m) && m[my][mx]
			if light[y][x] == dark {
				t.Fatalf("module %d,%d (quiet zone included) drawn wrong", x, y)
			}
		}
	}
}
