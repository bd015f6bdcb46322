package console_test

import (
	"bytes"
	"cmp"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"slices"
	"testing"
)

// smallPNG re-encodes a screenshot as a PNG of at most 256 colours, about
// a third of Chromium's truecolour PNG: a screenshot of the console has a
// few flat colours and the shades of antialiased text, which a palette
// keeps to the eye.
func smallPNG(shot []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		return nil, fmt.Errorf("decode the screenshot: %w", err)
	}
	var out bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&out, paletted(img)); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// shade is a colour of an image and how many pixels have it.
type shade struct {
	c [3]uint8
	n int
}

// paletted maps img (opaque) onto at most 256 colours by median cut: the
// box of colours with the widest range in one channel is split at the
// pixel-weighted median of that channel until there are 256 boxes; each
// box's colour is its pixels' mean. Wide ranges split first, so a colour
// few pixels have but far from the others (a thin red line) keeps a box
// of its own. An image of 256 colours or fewer is kept exactly.
func paletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	rgb := func(x, y int) [3]uint8 {
		r, g, bl, _ := img.At(x, y).RGBA()
		return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}
	}
	counts := map[[3]uint8]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			counts[rgb(x, y)]++
		}
	}
	all := make([]shade, 0, len(counts))
	for c, n := range counts {
		all = append(all, shade{c, n})
	}
	boxes := [][]shade{all}
	for len(boxes) < 256 {
		i, axis := widest(boxes)
		if i < 0 {
			break // every box holds one colour
		}
		lo, hi := split(boxes[i], axis)
		boxes[i] = lo
		boxes = append(boxes, hi)
	}
	pal := make(color.Palette, len(boxes))
	index := make(map[[3]uint8]uint8, len(counts))
	for i, box := range boxes {
		var sum [3]int
		n := 0
		for _, s := range box {
			for a := range 3 {
				sum[a] += int(s.c[a]) * s.n
			}
			n += s.n
			index[s.c] = uint8(i)
		}
		pal[i] = color.RGBA{uint8(sum[0] / n), uint8(sum[1] / n), uint8(sum[2] / n), 255}
	}
	out := image.NewPaletted(b, pal)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			out.SetColorIndex(x, y, index[rgb(x, y)])
		}
	}
	return out
}

// widest finds the box with the widest range in one channel, and that
// channel; -1 when no box holds two colours.
func widest(boxes [][]shade) (box, axis int) {
	box, width := -1, 0
	for i, bx := range boxes {
		for a := range 3 {
			lo, hi := 255, 0
			for _, s := range bx {
				lo, hi = min(lo, int(s.c[a])), max(hi, int(s.c[a]))
			}
			if hi-lo > width {
				box, axis, width = i, a, hi-lo
			}
		}
	}
	return box, axis
}

// split cuts a box of two colours or more in two along axis at its
// pixel-weighted median; both halves hold a colour at least.
func split(box []shade, axis int) (lo, hi []shade) {
	slices.SortFunc(box, func(p, q shade) int { return cmp.Compare(p.c[axis], q.c[axis]) })
	total := 0
	for _, s := range box {
		total += s.n
	}
	cut, acc := 1, 0
	for i, s := range box[:len(box)-1] {
		acc += s.n
		cut = i + 1
		if acc*2 >= total {
			break
		}
	}
	return box[:cut], box[cut:]
}

func TestPaletted(t *testing.T) {
	// 64 colours: kept exactly.
	few := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range 64 {
		few.Set(i%8, i/8, color.RGBA{uint8(i * 4), 10, 200, 255})
	}
	got := paletted(few)
	for i := range 64 {
		if r, g, b, _ := got.At(i%8, i/8).RGBA(); uint8(r>>8) != uint8(i*4) || g>>8 != 10 || b>>8 != 200 {
			t.Fatalf("pixel %d is %v; want it kept", i, got.At(i%8, i/8))
		}
	}
	// 4096 grey shades and a few red pixels: 256 colours, near the
	// original, the red kept red.
	many := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for i := range 4096 {
		many.Set(i%64, i/64, color.RGBA{uint8(i / 16), uint8(i / 16), uint8(i % 16 * 16), 255})
	}
	for x := range 3 {
		many.Set(x, 0, color.RGBA{200, 20, 20, 255})
	}
	got = paletted(many)
	if len(got.Palette) > 256 {
		t.Errorf("%d colours", len(got.Palette))
	}
	for y := range 64 {
		for x := range 64 {
			want := many.RGBAAt(x, y)
			r, g, b, _ := got.At(x, y).RGBA()
			d := max(diff(uint8(r>>8), want.R), diff(uint8(g>>8), want.G), diff(uint8(b>>8), want.B))
			if d > 24 {
				t.Fatalf("pixel %d,%d is %v; want near %v", x, y, got.At(x, y), want)
			}
		}
	}
}

func diff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}
