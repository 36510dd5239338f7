/* One JACK client with the daemon's MIDI input and output port, and a process callback in C.
 *
 * python-rtmidi opens one JACK client per port, and its input callback runs Python (taking the
 * GIL) in JACK's real-time thread. Here one client holds both ports, so JACK wakes one process
 * thread a period instead of two, and that thread never touches Python: it copies incoming
 * messages into a lock-free ring buffer and writes one byte to the service's wake-up socket, and
 * it drains a second ring buffer of outgoing messages into the output port. The main thread reads
 * and writes the other ends (`read`, `send`): one reader and one writer per buffer, as JACK's
 * ring buffer requires.
 *
 * Each incoming message is stamped on CLOCK_MONOTONIC (Python's time.monotonic) when the process
 * callback that takes it in runs: within a period or two of its arrival, however long the main
 * thread takes to read it. A chord played while the daemon is busy (generating, starting up) is
 * still heard as one chord, on the beat it was played.
 *
 * The JACK API used is declared below rather than included, so the module builds without JACK's
 * development headers; it links against the libjack.so.0 that jackd2 installs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct _jack_client jack_client_t;
typedef struct _jack_port jack_port_t;
typedef struct _jack_ringbuffer jack_ringbuffer_t;
typedef uint32_t jack_nframes_t;
typedef struct {
    jack_nframes_t time;
    size_t size;
    unsigned char *buffer;
} jack_midi_event_t;

enum { JackNoStartServer = 0x01, JackUseExactName = 0x02 };
enum { JackNameNotUnique = 0x04, JackServerFailed = 0x10, JackServerError = 0x20 };
enum { JackPortIsInput = 0x1, JackPortIsOutput = 0x2 };
#define MIDI_TYPE "8 bit raw midi"

extern jack_client_t *jack_client_open(const char *name, int options, int *status, ...);
extern int jack_client_close(jack_client_t *client);
extern jack_port_t *jack_port_register(jack_client_t *client, const char *name, const char *type,
                                       unsigned long flags, unsigned long buffer_size);
extern int jack_set_process_callback(jack_client_t *client, int (*cb)(jack_nframes_t, void *), void *arg);
extern void jack_on_shutdown(jack_client_t *client, void (*cb)(void *), void *arg);
extern int jack_activate(jack_client_t *client);
extern int jack_deactivate(jack_client_t *client);
extern void *jack_port_get_buffer(jack_port_t *port, jack_nframes_t nframes);
extern const char *jack_port_name(const jack_port_t *port);
extern uint32_t jack_midi_get_event_count(void *buffer);
extern int jack_midi_event_get(jack_midi_event_t *event, void *buffer, uint32_t index);
extern void jack_midi_clear_buffer(void *buffer);
extern size_t jack_midi_max_event_size(void *port_buffer);
extern int jack_midi_event_write(void *buffer, jack_nframes_t time, const unsigned char *data, size_t size);
extern int jack_connect(jack_client_t *client, const char *source, const char *destination);
extern const char **jack_get_ports(jack_client_t *client, const char *name_pattern, const char *type_pattern,
                                   unsigned long flags);
extern void jack_free(void *ptr);
extern jack_ringbuffer_t *jack_ringbuffer_create(size_t size);
extern void jack_ringbuffer_free(jack_ringbuffer_t *rb);
extern size_t jack_ringbuffer_read(jack_ringbuffer_t *rb, char *dest, size_t count);
extern size_t jack_ringbuffer_peek(jack_ringbuffer_t *rb, char *dest, size_t count);
extern size_t jack_ringbuffer_write(jack_ringbuffer_t *rb, const char *src, size_t count);
extern size_t jack_ringbuffer_read_space(const jack_ringbuffer_t *rb);
extern size_t jack_ringbuffer_write_space(const jack_ringbuffer_t *rb);

#define RING_BYTES (1 << 16)
#define IN_RING_BYTES (1 << 18) /* as many messages as before the stamps: 13 bytes a note, not 5 */
#define MAX_MESSAGE 1024 /* longer messages (big SysEx) are dropped and counted */
#define API_VERSION 2 /* 2: read() gives (arrival time, bytes) pairs */
#define IN_HEAD (2 + sizeof(double)) /* an incoming message's size and arrival time, then its bytes */

typedef struct {
    PyObject_HEAD
    jack_client_t *client;
    jack_port_t *in_port, *out_port;
    jack_ringbuffer_t *in_rb, *out_rb;
    int wake_fd;
    atomic_uint dropped_in;  /* arrived but no room, or too long */
    atomic_uint dropped_out; /* too big for even an empty period's buffer */
    atomic_int shut_down;
} Client;

static int process(jack_nframes_t nframes, void *arg) {
    Client *c = (Client *)arg;
    void *in = jack_port_get_buffer(c->in_port, nframes);
    uint32_t count = jack_midi_get_event_count(in);
    int arrived = 0;
    double now = 0.0;
    if (count > 0) {
        struct timespec ts; /* clock_gettime is a vDSO call: no system call, no lock */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    for (uint32_t i = 0; i < count; i++) {
        jack_midi_event_t ev;
        if (jack_midi_event_get(&ev, in, i) != 0)
            continue;
        uint16_t size = (uint16_t)ev.size;
        if (ev.size == 0 || ev.size > MAX_MESSAGE || jack_ringbuffer_write_space(c->in_rb) < IN_HEAD + size) {
            atomic_fetch_add(&c->dropped_in, 1);
            continue;
        }
        jack_ringbuffer_write(c->in_rb, (const char *)&size, 2);
        jack_ringbuffer_write(c->in_rb, (const char *)&now, sizeof(double));
        jack_ringbuffer_write(c->in_rb, (const char *)ev.buffer, size);
        arrived = 1;
    }
    if (arrived && c->wake_fd >= 0) {
        char byte = 0;
        ssize_t ignored = write(c->wake_fd, &byte, 1); /* non-blocking: full means a byte waits */
        (void)ignored;
    }
    void *out = jack_port_get_buffer(c->out_port, nframes);
    jack_midi_clear_buffer(out);
    unsigned char message[MAX_MESSAGE];
    while (jack_ringbuffer_read_space(c->out_rb) >= 2) {
        uint16_t size;
        jack_ringbuffer_peek(c->out_rb, (char *)&size, 2);
        if (jack_ringbuffer_read_space(c->out_rb) < 2u + size)
            break; /* the writer is still at it: next period */
        if (jack_midi_max_event_size(out) < size && jack_midi_get_event_count(out) > 0)
            break; /* this period's buffer is full: the rest goes out in the next ones, in order */
        jack_ringbuffer_read(c->out_rb, (char *)&size, 2);
        jack_ringbuffer_read(c->out_rb, (char *)message, size);
        if (jack_midi_event_write(out, 0, message, size) != 0)
            atomic_fetch_add(&c->dropped_out, 1);
    }
    return 0;
}

static void on_shutdown(void *arg) { atomic_store(&((Client *)arg)->shut_down, 1); }

static void release(Client *c) {
    if (c->client != NULL) {
        jack_deactivate(c->client); /* the process thread has stopped when this returns */
        jack_client_close(c->client);
        c->client = NULL;
    }
    if (c->in_rb != NULL) {
        jack_ringbuffer_free(c->in_rb);
        c->in_rb = NULL;
    }
    if (c->out_rb != NULL) {
        jack_ringbuffer_free(c->out_rb);
        c->out_rb = NULL;
    }
}

static int Client_init(Client *c, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"name", "in_port", "out_port", "wake_fd", NULL};
    const char *name, *in_name, *out_name;
    int wake_fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sss|i", kwlist, &name, &in_name, &out_name, &wake_fd))
        return -1;
    release(c);
    c->wake_fd = wake_fd;
    int status = 0;
    c->client = jack_client_open(name, JackNoStartServer | JackUseExactName, &status);
    if (c->client == NULL) {
        if (status & JackServerFailed)
            PyErr_Format(PyExc_OSError, "no JACK server answers (status 0x%x)", status);
        else if (status & (JackNameNotUnique | JackServerError)) /* jack2 answers a taken name so */
            PyErr_Format(PyExc_OSError, "the JACK client name %s is taken (is another midiseed running?)", name);
        else
            PyErr_Format(PyExc_OSError, "cannot open a JACK client (status 0x%x)", status);
        return -1;
    }
    c->in_rb = jack_ringbuffer_create(IN_RING_BYTES);
    c->out_rb = jack_ringbuffer_create(RING_BYTES);
    c->in_port = jack_port_register(c->client, in_name, MIDI_TYPE, JackPortIsInput, 0);
    c->out_port = jack_port_register(c->client, out_name, MIDI_TYPE, JackPortIsOutput, 0);
    if (c->in_rb == NULL || c->out_rb == NULL || c->in_port == NULL || c->out_port == NULL) {
        release(c);
        PyErr_Format(PyExc_OSError, "cannot register JACK MIDI ports %s and %s", in_name, out_name);
        return -1;
    }
    jack_set_process_callback(c->client, process, c);
    jack_on_shutdown(c->client, on_shutdown, c);
    if (jack_activate(c->client) != 0) {
        release(c);
        PyErr_SetString(PyExc_OSError, "cannot activate the JACK client");
        return -1;
    }
    return 0;
}

static void Client_dealloc(Client *c) {
    release(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int check_open(Client *c) {
    if (c->client == NULL) {
        PyErr_SetString(PyExc_OSError, "the JACK client is closed");
        return 0;
    }
    if (atomic_load(&c->shut_down)) {
        PyErr_SetString(PyExc_OSError, "the JACK server shut down");
        return 0;
    }
    return 1;
}

static PyObject *Client_read(Client *c, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL || c->in_rb == NULL)
        return out;
    unsigned char message[MAX_MESSAGE];
    while (jack_ringbuffer_read_space(c->in_rb) >= 2) {
        uint16_t size;
        double t;
        jack_ringbuffer_peek(c->in_rb, (char *)&size, 2);
        if (jack_ringbuffer_read_space(c->in_rb) < IN_HEAD + size)
            break;
        jack_ringbuffer_read(c->in_rb, (char *)&size, 2);
        jack_ringbuffer_read(c->in_rb, (char *)&t, sizeof(double));
        jack_ringbuffer_read(c->in_rb, (char *)message, size);
        PyObject *list = PyList_New(size);
        if (list == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        for (uint16_t i = 0; i < size; i++)
            PyList_SET_ITEM(list, i, PyLong_FromLong(message[i]));
        PyObject *pair = Py_BuildValue("(dN)", t, list); /* N: the pair takes the list's reference */
        if (pair == NULL || PyList_Append(out, pair) != 0) {
            Py_XDECREF(pair);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(pair);
    }
    return out;
}

static PyObject *Client_send(Client *c, PyObject *arg) {
    if (!check_open(c))
        return NULL;
    PyObject *seq = PySequence_Fast(arg, "send() takes a sequence of byte values");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > MAX_MESSAGE) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "a MIDI message of %zd bytes (1..%d)", n, MAX_MESSAGE);
    }
    unsigned char message[MAX_MESSAGE];
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v < 0 || v > 255) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "byte %zd of a MIDI message is %ld", i, v);
            return NULL;
        }
        message[i] = (unsigned char)v;
    }
    Py_DECREF(seq);
    uint16_t size = (uint16_t)n;
    if (jack_ringbuffer_write_space(c->out_rb) < 2u + size) {
        PyErr_SetString(PyExc_OSError, "the JACK output buffer is full");
        return NULL;
    }
    /* the size, then the bytes: process() takes a message only once all of it is there */
    jack_ringbuffer_write(c->out_rb, (const char *)&size, 2);
    jack_ringbuffer_write(c->out_rb, (const char *)message, size);
    Py_RETURN_NONE;
}

static PyObject *Client_connect(Client *c, PyObject *args) {
    const char *source, *destination;
    if (!PyArg_ParseTuple(args, "ss", &source, &destination) || !check_open(c))
        return NULL;
    int result = jack_connect(c->client, source, destination);
    return PyLong_FromLong(result == EEXIST ? 0 : result);
}

static PyObject *Client_ports(Client *c, PyObject *args) {
    int inputs;
    if (!PyArg_ParseTuple(args, "p", &inputs) || !check_open(c))
        return NULL;
    const char **names = jack_get_ports(c->client, NULL, MIDI_TYPE, inputs ? JackPortIsInput : JackPortIsOutput);
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && names != NULL && names[i] != NULL; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(names[i], strlen(names[i]), "replace");
        if (s == NULL || PyList_Append(out, s) != 0) {
            Py_XDECREF(s);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(s);
    }
    if (names != NULL)
        jack_free(names);
    return out;
}

static PyObject *Client_close(Client *c, PyObject *unused) {
    release(c);
    Py_RETURN_NONE;
}

static PyObject *Client_port_names(Client *c, void *closure) {
    if (!check_open(c))
        return NULL;
    return Py_BuildValue("(ss)", jack_port_name(c->in_port), jack_port_name(c->out_port));
}

static PyObject *Client_dropped(Client *c, void *closure) {
    return Py_BuildValue("(II)", atomic_load(&c->dropped_in), atomic_load(&c->dropped_out));
}

static PyObject *Client_alive(Client *c, void *closure) {
    return PyBool_FromLong(c->client != NULL && !atomic_load(&c->shut_down));
}

static PyMethodDef Client_methods[] = {
    {"read", (PyCFunction)Client_read, METH_NOARGS, "Every message that arrived since the last read, in order, as (time.monotonic() it was taken in at, bytes)."},
    {"send", (PyCFunction)Client_send, METH_O, "Queue one message for the output port's next period."},
    {"connect", (PyCFunction)Client_connect, METH_VARARGS, "jack_connect(source, destination): 0 = connected."},
    {"ports", (PyCFunction)Client_ports, METH_VARARGS, "Full names of the MIDI input (True) or output ports."},
    {"close", (PyCFunction)Client_close, METH_NOARGS, "Deactivate and close the client (idempotent)."},
    {NULL},
};

static PyGetSetDef Client_getset[] = {
    {"port_names", (getter)Client_port_names, NULL, "(input, output): our ports' full names.", NULL},
    {"dropped", (getter)Client_dropped, NULL, "(incoming, outgoing) messages dropped so far.", NULL},
    {"alive", (getter)Client_alive, NULL, "Open, and the server has not shut down.", NULL},
    {NULL},
};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "midiseed.daemon._jackmidi.Client",
    .tp_basicsize = sizeof(Client),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Client(name, in_port, out_port, wake_fd=-1): one JACK client with a MIDI input and output.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_methods = Client_methods,
    .tp_getset = Client_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jackmidi",
                                    "One JACK client for the daemon's two MIDI ports.", -1, NULL};

PyMODINIT_FUNC PyInit__jackmidi(void) {
    if (PyType_Ready(&ClientType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ClientType);
    if (PyModule_AddObject(m, "Client", (PyObject *)&ClientType) < 0) {
        Py_DECREF(&ClientType);
        Py_DECREF(m);
        return NULL;
    }
    /* what jackports.py expects of read(); a build older than its Python (a `git pull` without
     * `pip install -e .` again) is not used */
    if (PyModule_AddIntConstant(m, "API", API_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
