package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
)

// A FastCGI client, just enough to run one PHP script in php-fpm's pool
// (what cachetool does to reset OPcache): one request per connection, role
// responder, no body. See the FastCGI specification, sections 3 to 6.

const (
	fcgiVersion       = 1
	fcgiBeginRequest  = 1
	fcgiEndRequest    = 3
	fcgiParams        = 4
	fcgiStdin         = 5
	fcgiStdout        = 6
	fcgiStderr        = 7
	fcgiResponder     = 1
	fcgiRequestID     = 1
	fcgiMaxContent    = 65535
	fcgiRequestStatus = 0 // FCGI_REQUEST_COMPLETE
)

// fastcgiResponse is what a FastCGI application answered.
type fastcgiResponse struct {
	Status int                  // the CGI Status header, 200 without one
	Header textproto.MIMEHeader // the CGI headers
	Body   []byte
	Stderr []byte // what the application wrote to FCGI_STDERR (PHP's errors)
}

// fastcgiGet sends one GET request with params over conn and reads the
// response; conn is closed. The context bounds the whole exchange: it
// closes conn when done, as an SSH channel has no deadlines.
func fastcgiGet(ctx context.Context, conn net.Conn, params map[string]string) (*fastcgiResponse, error) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, err := fastcgiExchange(conn, params)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}

func fastcgiExchange(conn net.Conn, params map[string]string) (*fastcgiResponse, error) {
	w := bufio.NewWriter(conn)
	// Keep-conn flag 0: the application closes the connection when done.
	begin := []byte{0, fcgiResponder, 0, 0, 0, 0, 0, 0}
	if err := writeRecord(w, fcgiBeginRequest, begin); err != nil {
		return nil, err
	}
	encoded, err := encodeParams(params)
	if err != nil {
		return nil, err
	}
	for len(encoded) > 0 {
		n := min(len(encoded), fcgiMaxContent)
		if err := writeRecord(w, fcgiParams, encoded[:n]); err != nil {
			return nil, err
		}
		encoded = encoded[n:]
	}
	// Empty FCGI_PARAMS and FCGI_STDIN records end the two streams.
	if err := writeRecord(w, fcgiParams, nil); err != nil {
		return nil, err
	}
	if err := writeRecord(w, fcgiStdin, nil); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}

	r := bufio.NewReader(conn)
	var stdout, stderr bytes.Buffer
	for {
		typ, content, err := readRecord(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("the FastCGI server closed the connection before it answered")
			}
			return nil, err
		}
		switch typ {
		case fcgiStdout:
			stdout.Write(content)
		case fcgiStderr:
			stderr.Write(content)
		case fcgiEndRequest:
			if len(content) < 8 {
				return nil, errors.New("short FCGI_END_REQUEST record")
			}
			if status := content[4]; status != fcgiRequestStatus {
				return nil, fmt.Errorf("the FastCGI server refused the request (protocol status %d)", status)
			}
			resp, err := parseCGI(stdout.Bytes())
			if err != nil {
				return nil, err
			}
			resp.Stderr = stderr.Bytes()
			return resp, nil
		}
	}
}

// writeRecord writes one record of request fcgiRequestID, padded to a
// multiple of 8 bytes.
func writeRecord(w io.Writer, typ byte, content []byte) error {
	pad := (8 - len(content)%8) % 8
	header := []byte{fcgiVersion, typ, 0, fcgiRequestID, byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	record := append(append(header, content...), make([]byte, pad)...)
	_, err := w.Write(record)
	return err
}

// readRecord reads one record and returns its type and content.
func readRecord(r io.Reader) (byte, []byte, error) {
	var header [8]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return 0, nil, err
	}
	if header[0] != fcgiVersion {
		return 0, nil, fmt.Errorf("not a FastCGI server (record version %d)", header[0])
	}
	length := int(binary.BigEndian.Uint16(header[4:6]))
	body := make([]byte, length+int(header[6]))
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("reading a FastCGI record: %w", err)
	}
	return header[1], body[:length], nil
}

// encodeParams encodes name-value pairs, in name order.
func encodeParams(params map[string]string) ([]byte, error) {
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, name := range names {
		value := params[name]
		for _, n := range []int{len(name), len(value)} {
			switch {
			case n < 128:
				b.WriteByte(byte(n))
			case n < 1<<31:
				binary.Write(&b, binary.BigEndian, uint32(n)|1<<31)
			default:
				return nil, fmt.Errorf("FastCGI parameter %s is too long", name)
			}
		}
		b.WriteString(name)
		b.WriteString(value)
	}
	return b.Bytes(), nil
}

// parseCGI splits a CGI response into its headers and body.
func parseCGI(out []byte) (*fastcgiResponse, error) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(out)))
	mime, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("the FastCGI answer has no CGI headers: %.200q", out)
	}
	body, _ := io.ReadAll(r.R)
	resp := &fastcgiResponse{Status: 200, Header: mime, Body: body}
	if status := mime.Get("Status"); status != "" {
		code, _, _ := strings.Cut(status, " ")
		if resp.Status, err = strconv.Atoi(code); err != nil {
			return nil, fmt.Errorf("the FastCGI answer has a malformed Status header %q", status)
		}
	}
	return resp, nil
}
