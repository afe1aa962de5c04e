// Package qr draws kanal's QR codes (ISO/IEC 18004): the EPC payment code
// of a payment request (payments/epc) and a safety number's code in the
// terminal (kanal safety-number).
//
// The symbols come from github.com/boombuler/barcode, which picks the mask
// by the standard's penalty rules. ZXing's detector (the reference
// decoder, and the one many Android scanners build on) missed 95 of 3,000
// payment codes from the encoder used before, even drawn perfectly, and
// 14 of 3,000 from this one; zbarimg and zxing-cpp read them all
// (docs/payments.md, "How scanners read the QR code").
// payments/epc's TestZXingDetectorFindsTheCodes keeps codes that it
// missed then.
package qr

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"strings"

	"github.com/boombuler/barcode"
	bqr "github.com/boombuler/barcode/qr"
)

// QuietZone is the light border around a symbol, in modules: the four
// that ISO/IEC 18004 asks for.
const QuietZone = 4

// alphanumeric is the QR alphanumeric mode's character set.
const alphanumeric = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

// Modules encodes text at error correction level M and returns the
// symbol's modules row by row, true for dark, without the quiet zone.
// The whole text is one segment: alphanumeric mode when every character
// is in that mode's set (a safety number), else byte mode with the text's
// UTF-8 bytes and no ECI header, as EPC069-12 codes are written.
func Modules(text string) ([][]bool, error) {
	mode := bqr.Unicode
	if text != "" && strings.Trim(text, alphanumeric) == "" {
		mode = bqr.AlphaNumeric
	}
	code, err := bqr.Encode(text, bqr.M, mode)
	if err != nil {
		return nil, fmt.Errorf("qr: %w", err)
	}
	return modules(code), nil
}

// modules reads a symbol's dark modules out of its image.
func modules(code barcode.Barcode) [][]bool {
	b := code.Bounds()
	rows := make([][]bool, b.Dy())
	for y := range rows {
		rows[y] = make([]bool, b.Dx())
		for x := range rows[y] {
			r, g, bl, _ := code.At(b.Min.X+x, b.Min.Y+y).RGBA()
			rows[y][x] = r+g+bl < 3*0x8000
		}
	}
	return rows
}

// PNG draws modules in black on white, scale pixels per module, with the
// quiet zone: (len(modules) + 2·QuietZone)·scale pixels across. Every
// module is a whole number of pixels: a module stretched over a fraction
// of a pixel makes uneven lines that scanners misread.
func PNG(modules [][]bool, scale int) ([]byte, error) {
	if scale < 1 {
		return nil, fmt.Errorf("qr: %d pixels per module", scale)
	}
	side := (len(modules) + 2*QuietZone) * scale
	img := image.NewGray(image.Rect(0, 0, side, side))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y, row := range modules {
		for x, dark := range row {
			if !dark {
				continue
			}
			for py := (y + QuietZone) * scale; py < (y+QuietZone+1)*scale; py++ {
				line := img.Pix[py*img.Stride:]
				for px := (x + QuietZone) * scale; px < (x+QuietZone+1)*scale; px++ {
					line[px] = 0
				}
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("qr: %w", err)
	}
	return b.Bytes(), nil
}

// Terminal draws modules for a terminal with the quiet zone, two module
// rows per line in half blocks, light modules as the block's colour and
// dark ones as the background: light on a dark terminal. A symbol has an
// odd number of rows with its quiet zone, so the last line holds one row,
// as '▀' (light) or ' ' (dark) over the terminal's background.
func Terminal(modules [][]bool) string {
	n := len(modules) + 2*QuietZone
	dark := func(x, y int) bool {
		x, y = x-QuietZone, y-QuietZone
		return y >= 0 && y < len(modules) && x >= 0 && x < len(modules[y]) && modules[y][x]
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := 0; x < n; x++ {
			top, bottom := !dark(x, y), y+1 < n && !dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
