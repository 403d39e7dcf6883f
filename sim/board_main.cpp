// The simulated board: the Verilator model of `top` with its byte streams on a TCP socket.
//
//     Vboard [--port N] [--trace FILE] [--max-cycles N] [--idle-cycles N]
//
// `top` has the ports clk, rst, i__payload[7:0], i__valid, i__ready (bytes to the design),
// o__payload[7:0], o__valid, o__ready (bytes from it). The board holds rst for RESET_CYCLES, listens
// on 127.0.0.1:N (0: a free port), prints `listening on PORT` to stdout, and serves one client at a
// time, as a UART bridged to TCP would (LiteX's serial2tcp): bytes received go into `i` whenever the
// design is ready, bytes from `o` go to the client. When a client disconnects the board accepts the
// next one; the design keeps its state, and what it sends while nobody is connected is lost.
//
// Verilator spells the `__` of the port names `___05F`: i__valid is top->i___05Fvalid.
//
// Speed: the clock runs in batches of IO_INTERVAL cycles with no system call inside a batch; between
// batches the sockets are served with non-blocking accept/recv/send. o.ready is 1 unless
// OUT_LIMIT bytes are waiting for the client (TCP back-pressure then reaches the design).
//
// Idle policy: every clocked cycle is a design cycle (none is skipped or counted twice). The clock
// stops only when no byte has moved (socket to buffer, buffer to design, design to buffer, buffer
// to socket) for --idle-cycles cycles (default 2**26, about 4 s) and no received byte waits for the design:
// the board then blocks in poll() until the client sends, the client's send buffer drains, or a
// client connects. A design that computes for longer than that without moving a byte needs a larger
// --idle-cycles (0: never stop the clock). Time spent stopped does not count in cycles/s.
//
// On SIGINT or SIGTERM (or after --max-cycles) the board closes the trace and prints to stderr:
//     simulated C cycles in S s (R cycles/s), stopped I s while idle

#include "Vtop.h"
#include "verilated.h"
#if VM_TRACE_FST
#include "verilated_fst_c.h"
#endif

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

constexpr int RESET_CYCLES = 4;
constexpr uint64_t IO_INTERVAL = 256;          // cycles between two visits to the sockets
constexpr size_t IN_SIZE = 1 << 16;            // received bytes not yet taken by the design
constexpr size_t OUT_LIMIT = 1 << 20;          // bytes from the design not yet sent
constexpr int POLL_MS = 200;                   // longest sleep when stopped (signals end it early)

volatile sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "Vboard: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

[[noreturn]] void usage(const char* message) {
    std::fprintf(stderr, "Vboard: %s\nusage: Vboard [--port N] [--trace FILE] [--max-cycles N] [--idle-cycles N]\n",
                 message);
    std::exit(2);
}

uint64_t number(const char* text) {
    char* end;
    errno = 0;
    unsigned long long value = std::strtoull(text, &end, 10);
    if (errno || end == text || *end) usage("not a number");
    return value;
}

void nonblocking(int fd) {
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) fail("fcntl");
}

int listen_on(int& port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) fail("bind");
    if (listen(fd, 1) < 0) fail("listen");
    socklen_t length = sizeof address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) < 0) fail("getsockname");
    port = ntohs(address.sin_port);
    nonblocking(fd);
    return fd;
}

// The bytes between the socket and the design, and the client they belong to.
struct Link {
    int listener;
    int client = -1;
    std::vector<uint8_t> in = std::vector<uint8_t>(IN_SIZE);
    size_t in_head = 0, in_tail = 0;  // in[in_head:in_tail] waits for the design
    std::vector<uint8_t> out;
    size_t out_sent = 0;              // out[out_sent:] waits for the client

    bool input_waiting() const { return in_head < in_tail; }
    bool output_waiting() const { return out_sent < out.size(); }

    void disconnect() {
        close(client);
        client = -1;
        out.clear();
        out_sent = 0;
    }

    // Accept, receive and send what can be without blocking; true if a byte moved or a client came.
    bool serve() {
        bool moved = false;
        if (client < 0) {
            client = accept(listener, nullptr, nullptr);
            if (client < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) fail("accept");
                out.clear();  // nobody listens: the design's bytes are lost, as on a UART
                out_sent = 0;
                return false;
            }
            nonblocking(client);
            int one = 1;
            setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            moved = true;
        }
        if (in_head == in_tail) in_head = in_tail = 0;
        if (in_tail == in.size() && in_head > 0) {
            std::memmove(in.data(), in.data() + in_head, in_tail - in_head);
            in_tail -= in_head;
            in_head = 0;
        }
        if (in_tail < in.size()) {
            ssize_t n = recv(client, in.data() + in_tail, in.size() - in_tail, 0);
            if (n > 0) {
                in_tail += n;
                moved = true;
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                disconnect();  // the received bytes stay: they crossed the wire
                return moved;
            }
        }
        if (output_waiting()) {
            ssize_t n = send(client, out.data() + out_sent, out.size() - out_sent, MSG_NOSIGNAL);
            if (n > 0) {
                out_sent += n;
                moved = true;
                if (out_sent == out.size()) {
                    out.clear();
                    out_sent = 0;
                }
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                disconnect();
            }
        }
        return moved;
    }

    // Sleep until a client connects, sends, or can take more of our output (or a signal, or POLL_MS).
    void wait() const {
        pollfd what{};
        what.fd = client < 0 ? listener : client;
        what.events = static_cast<short>(POLLIN | (client >= 0 && output_waiting() ? POLLOUT : 0));
        poll(&what, 1, POLL_MS);
    }
};

}  // namespace

int main(int argc, char** argv) {
    // A board outlives nothing: if the process that started it dies, so does the board.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int port = 0;
    const char* trace_file = nullptr;
    uint64_t max_cycles = 0;  // 0: no limit
    uint64_t idle_cycles = uint64_t{1} << 26;  // a few seconds: longer than any one command computes
    for (int i = 1; i < argc; ++i) {
        std::string option = argv[i];
        if (i + 1 == argc) usage("an option without its value");
        const char* value = argv[++i];
        if (option == "--port") port = static_cast<int>(number(value));
        else if (option == "--trace") trace_file = value;
        else if (option == "--max-cycles") max_cycles = number(value);
        else if (option == "--idle-cycles") idle_cycles = number(value);
        else usage(("unknown option " + option).c_str());
    }

    auto context = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vtop>(context.get());
#if VM_TRACE_FST
    std::unique_ptr<VerilatedFstC> trace;
    if (trace_file) {
        context->traceEverOn(true);
        trace = std::make_unique<VerilatedFstC>();
        top->trace(trace.get(), 99);
        trace->open(trace_file);
    }
#else
    if (trace_file) {
        std::fprintf(stderr, "Vboard: --trace needs a board built with FST tracing (build_board(..., trace=True))\n");
        return 2;
    }
#endif

    struct sigaction action{};
    action.sa_handler = on_signal;
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);

    Link link;
    link.listener = listen_on(port);
    std::printf("listening on %d\n", port);
    std::fflush(stdout);

    uint64_t cycles = 0, last_moved = 0;
    Clock::duration stopped{};
    auto start = Clock::now();

    // One clock cycle: present the inputs, settle with clk low, see what the edge will transfer,
    // then the rising edge. True if a byte moved.
    auto cycle = [&]() {
        bool offer = link.input_waiting();
        top->i___05Fvalid = offer;
        if (offer) top->i___05Fpayload = link.in[link.in_head];
        top->o___05Fready = link.out.size() < OUT_LIMIT;
        top->clk = 0;
        top->eval();
#if VM_TRACE_FST
        if (trace) trace->dump(2 * cycles);
#endif
        bool taken = offer && top->i___05Fready;
        bool given = top->o___05Fvalid && top->o___05Fready;
        if (given) link.out.push_back(top->o___05Fpayload);
        link.in_head += taken;
        top->clk = 1;
        top->eval();
#if VM_TRACE_FST
        if (trace) trace->dump(2 * cycles + 1);
#endif
        ++cycles;
        return taken || given;
    };

    top->rst = 1;
    for (int i = 0; i < RESET_CYCLES; ++i) cycle();
    top->rst = 0;

    while (!stop_requested && (max_cycles == 0 || cycles < max_cycles)) {
        uint64_t batch = IO_INTERVAL;
        if (max_cycles && max_cycles - cycles < batch) batch = max_cycles - cycles;
        bool moved = false;
        for (uint64_t i = 0; i < batch; ++i) moved |= cycle();
        if (link.serve()) moved = true;
        if (moved) last_moved = cycles;
        while (idle_cycles && cycles - last_moved >= idle_cycles && !link.input_waiting() && !stop_requested) {
            auto sleep = Clock::now();
            link.wait();
            stopped += Clock::now() - sleep;
            if (link.serve()) last_moved = cycles;
        }
    }

    double wall = seconds(Clock::now() - start - stopped);
#if VM_TRACE_FST
    if (trace) trace->close();
#endif
    top->final();
    std::fprintf(stderr, "simulated %llu cycles in %.3f s (%.0f cycles/s), stopped %.3f s while idle\n",
                 static_cast<unsigned long long>(cycles), wall, wall > 0 ? cycles / wall : 0.0,
                 seconds(stopped));
    return 0;
}
