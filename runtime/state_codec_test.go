package runtime

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStateCodec(t *testing.T) {
	tests := []struct {
		name  string
		value any
		want  string
	}{
		{"whole number", 42.0, "42"},
		{"negative whole number", -7.0, "-7"},
		{"zero", 0.0, "0"},
		{"negative zero", math.Copysign(0, -1), "-0"},
		{"million, as encoding/json writes it", 1e6, "1000000"},
		{"fraction", 2.5, "2.5"},
		{"beyond exact integers", 1e20, "1e+20"},
		{"list", []any{1.0, "x"}, `[1,"x"]`},
		{"object", map[string]any{"n": 1.0}, `{"n":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeState(tt.value)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(b))
			back, err := decodeState(b)
			require.NoError(t, err)
			assert.Equal(t, tt.value, back)
		})
	}
}

// FuzzStateCodec checks that every number survives encodeState and
// decodeState exactly, and that decodeState reads any JSON as
// encoding/json does.
func FuzzStateCodec(f *testing.F) {
	for _, seed := range []string{"0", "-0", "1", "1e6", "2.5", "-1e300", `"x"`, "[1,2]", "{}", "nope", "", "Inf", "0x10", "01", "1.", "-", "1e", "1E+2"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := decodeState([]byte(s))
		var want any
		if jerr := json.Unmarshal([]byte(s), &want); jerr == nil {
			require.NoError(t, err)
			if n, ok := want.(float64); ok {
				require.Equal(t, math.Float64bits(n), math.Float64bits(got.(float64)), "%q", s)
			} else {
				require.Equal(t, want, got, "%q", s)
			}
		} else if s != "" {
			require.Error(t, err, "%q is not JSON", s)
		}
		if n, ok := got.(float64); ok && !math.IsInf(n, 0) && !math.IsNaN(n) {
			b, err := encodeState(n)
			require.NoError(t, err)
			back, err := decodeState(b)
			require.NoError(t, err)
			require.Equal(t, math.Float64bits(n), math.Float64bits(back.(float64)), "%v encoded as %q", n, b)
			require.True(t, json.Valid(b), "%q", b)
		}
	})
}

func TestNumericReducersRefuseWhatIsNotAFiniteNumber(t *testing.T) {
	tests := []struct {
		name  string
		value any
		want  string
	}{
		{"string", "7", "reduce sum: value is string, not a number"},
		{"infinity", math.Inf(1), "reduce sum: value is +Inf, not a finite number"},
		{"not a number", math.NaN(), "reduce sum: value is NaN, not a finite number"},
	}
	sum := numericReducers["sum"]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sum.value(tt.value)
			require.EqualError(t, err, tt.want)
		})
	}
}
