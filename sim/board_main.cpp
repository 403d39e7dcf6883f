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
//
// DRAM (a design built with -DNEOFPGA_DRAM, whose `top` has the port `dram`: LiteDRAM's native
// user port, hdl/dram_port.py): the board answers it with the Dram below, configured by
//     --dram KEY=VALUE,...   the chip and controller (contract/dram.py's fields, in controller
//                            cycles), the design's clock (accel_hz) and the DRAM words (words)
//     --dram-init FILE       the DRAM's first bytes, as LiteX's --sdram-init (a preloaded image)
//     --dram-stuck-bit B     address bit B of every access reads as 0 (a fault for selftest)
// and adds to its summary line: `, DRAM R reads W writes`.
//
// PCIe (a design built with -DNEOFPGA_XDMA, whose `top` has AXI4-Stream ports h2c and c2h of
// 64-bit beats, hdl/axi_stream.py): instead of a TCP port the board presents XDMA's character
// devices as named pipes, PREFIX_h2c_0 (the host writes) and PREFIX_c2h_0 (the host reads), and
// prints `xdma at PREFIX`:
//     --xdma PREFIX          where the two pipes are made (removed again at exit)
//     --dma KEY=VALUE,...    the DMA model: latency (design cycles a transfer, each way),
//                            h2c_bytes_per_mcycle, c2h_bytes_per_mcycle (bandwidth, bytes a
//                            million design cycles); contract/pcie.py's figures
//     --reset-after-bytes N  a fault: reset the design (and drop the transfers in flight) once N
//                            bytes went to it; --stall-after-bytes N: take no more after N bytes;
//                            --cut-transfer N: the Nth C2H transfer loses its second half
// The DMA model: what one read() of the h2c pipe returns is a transfer (the host writes one
// transfer with one write(), and waits for its answer before the next, so a read holds one); its
// first byte reaches the design `latency` cycles after the later of its arrival and the end of
// the transfer before it, the rest at the H2C bandwidth, in beats of up to 8 bytes with tkeep,
// tlast on its last beat. The design's beats are taken at the C2H bandwidth; a beat with tlast
// ends a transfer, which reaches the c2h pipe `latency` cycles later. Every cycle a transfer spends
// in the model is clocked (the clock stops only when none is in flight), so the simulated cycles
// are the board's with the host's DMA. The summary line adds `, DMA T transfers in H bytes,
// U transfers out O bytes`. A streamed design (-DNEOFPGA_WEIGHTS, a `weights` port: the host's
// weight stream, hdl/streamed_memory.py) has a second H2C channel, PREFIX_h2c_1, into it in beats
// of 16 bytes, with its own engine under the same DMA model.

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
#include <deque>
#include <algorithm>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

// Each KEY=VALUE of option `option`'s comma-separated `text`, the value a number, to `take`.
template <typename Take>
void for_each_setting(const char* option, const std::string& text, Take take) {
    size_t at = 0;
    while (at < text.size()) {
        size_t end = text.find(',', at);
        if (end == std::string::npos) end = text.size();
        std::string item = text.substr(at, end - at);
        size_t equals = item.find('=');
        if (equals == std::string::npos) usage((std::string(option) + " takes KEY=VALUE,...").c_str());
        take(item.substr(0, equals), number(item.substr(equals + 1).c_str()));
        at = end + 1;
    }
}

// Hand out[sent:] to `put` (a write() or send() of bytes and a count); what it took leaves the
// buffer. Returns put's result: the bytes taken, or 0 or -1 (errno says why).
template <typename Put>
ssize_t put_waiting(std::vector<uint8_t>& out, size_t& sent, Put put) {
    ssize_t n = put(out.data() + sent, out.size() - sent);
    if (n > 0) {
        sent += n;
        if (sent == out.size()) {
            out.clear();
            sent = 0;
        }
    }
    return n;
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
            ssize_t n = put_waiting(out, out_sent, [&](const uint8_t* bytes, size_t count) {
                return send(client, bytes, count, MSG_NOSIGNAL);
            });
            if (n > 0) moved = true;
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) disconnect();
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


#ifdef NEOFPGA_XDMA
// One H2C channel: a named pipe whose reads are transfers, delivered to a port in beats of `beat_bytes`.
struct H2cChannel {
    struct Transfer {
        std::vector<uint8_t> data;
        size_t sent;      // bytes of it that went to the design
        uint64_t start;   // the cycle its first byte arrives
    };
    static constexpr size_t READ_SIZE = 1 << 20;  // a pipe's capacity, asked below
    int beat_bytes = 8;
    std::string path;
    int fd = -1;
    std::deque<Transfer> incoming;
    uint64_t free = 0;     // the cycle its engine has sent the last transfer
    int beat = 0;          // bytes of the beat offered this cycle
    uint64_t transfers = 0, bytes = 0;

    // A transfer the host wrote, if any: its first byte `latency` cycles after the later of now and
    // the end of the one before, the rest at `rate` bytes a million cycles.
    bool receive(uint64_t now, uint64_t latency, uint64_t rate) {
        std::vector<uint8_t> data(READ_SIZE);
        ssize_t n = read(fd, data.data(), data.size());
        if (n > 0) {
            data.resize(n);
            uint64_t start = std::max(now, free) + latency;
            free = start + (static_cast<uint64_t>(n) * 1000000 + rate - 1) / rate;
            incoming.push_back(Transfer{std::move(data), 0, start});
            ++transfers;
            return true;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) fail(path.c_str());
        return false;
    }

    // The beat to offer in cycle `now` (at most `limit` bytes more), into `payload`: data, keep, last.
    template <typename Wide>
    bool offer(Wide& payload, uint64_t now, uint64_t rate, uint64_t limit) {
        beat = 0;
        if (incoming.empty()) return false;
        const Transfer& t = incoming.front();
        uint64_t arrived = now < t.start ? 0 : std::min<uint64_t>(t.data.size(), ((now - t.start + 1) * rate) / 1000000);
        uint64_t size = std::min<uint64_t>({static_cast<uint64_t>(beat_bytes), t.data.size() - t.sent, limit});
        if (size == 0 || arrived < t.sent + size) return false;
        beat = static_cast<int>(size);
        int words = (9 * beat_bytes + 1 + 31) / 32;
        for (int w = 0; w < words; ++w) payload[w] = 0;
        for (int b = 0; b < beat; ++b) payload[b / 4] |= static_cast<uint32_t>(t.data[t.sent + b]) << (8 * (b % 4));
        auto set = [&](int bit) { payload[bit / 32] |= uint32_t{1} << (bit % 32); };
        for (int b = 0; b < beat; ++b) set(8 * beat_bytes + b);          // keep
        if (t.sent + beat == t.data.size()) set(9 * beat_bytes);         // last
        return true;
    }

    // The beat offered was taken; the bytes now sent.
    void taken() {
        Transfer& t = incoming.front();
        t.sent += beat;
        bytes += beat;
        if (t.sent == t.data.size()) incoming.pop_front();
    }
};

// XDMA's H2C and C2H streams, as named pipes on the host's side and AXI4-Stream ports on the design's
// (with NEOFPGA_WEIGHTS, a second H2C channel, PREFIX_h2c_1, into the `weights` port: the host's
// weight stream, in beats of 16 bytes; its transfers share the DMA model, each channel its engine).
class Xdma {
public:
    uint64_t latency = 0, h2c_rate = 0, c2h_rate = 0;  // cycles; bytes a million cycles
    uint64_t reset_after = 0, stall_after = 0, cut_transfer = 0;  // faults (0: none)
    uint64_t transfers_out = 0, bytes_out = 0;
    bool reset_now = false;
    H2cChannel commands;
#ifdef NEOFPGA_WEIGHTS
    H2cChannel weights;
#endif

    void configure(const std::string& text) {
        for_each_setting("--dma", text, [&](const std::string& key, uint64_t value) {
            if (key == "latency") latency = value;
            else if (key == "h2c_bytes_per_mcycle") h2c_rate = value;
            else if (key == "c2h_bytes_per_mcycle") c2h_rate = value;
            else usage(("--dma: unknown key " + key).c_str());
        });
    }

    void open_pipes(const std::string& prefix) {
        if (!h2c_rate || !c2h_rate) usage("this board has a PCIe port: give --dma with both bandwidths");
        commands.path = prefix + "_h2c_0";
        commands.fd = make_pipe(commands.path);
#ifdef NEOFPGA_WEIGHTS
        weights.path = prefix + "_h2c_1";
        weights.fd = make_pipe(weights.path);
        weights.beat_bytes = 16;
#endif
        c2h_path = prefix + "_c2h_0";
        c2h = make_pipe(c2h_path);
    }

    void remove_pipes() {
        unlink(commands.path.c_str());
#ifdef NEOFPGA_WEIGHTS
        unlink(weights.path.c_str());
#endif
        unlink(c2h_path.c_str());
    }

    // Read what the host wrote, pass on the answers that are due; true if a byte moved.
    bool serve(uint64_t now) {
        bool moved = false;
        if (!stalled()) moved |= commands.receive(now, latency, h2c_rate);
#ifdef NEOFPGA_WEIGHTS
        moved |= weights.receive(now, latency, h2c_rate);
#endif
        while (!outgoing.empty() && outgoing.front().due <= now) {
            out.insert(out.end(), outgoing.front().data.begin(), outgoing.front().data.end());
            outgoing.pop_front();
        }
        if (output_waiting()) {
            ssize_t n = put_waiting(out, out_sent, [&](const uint8_t* bytes, size_t count) {
                return write(c2h, bytes, count);
            });
            if (n > 0) moved = true;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) fail("write c2h");
        }
        return moved;
    }

    // The ports' inputs for cycle `now`, before the clock edge.
    void drive(Vtop* top, uint64_t now) {
        uint64_t limit = stall_after ? stall_after - std::min(stall_after, commands.bytes) : ~uint64_t{0};
        top->h2c___05Fvalid = commands.offer(top->h2c___05Fpayload, now, h2c_rate, limit);
#ifdef NEOFPGA_WEIGHTS
        top->weights___05Fvalid = weights.offer(top->weights___05Fpayload, now, h2c_rate, ~uint64_t{0});
#endif
        credit = std::min<uint64_t>(credit + c2h_rate, 16 * 1000000);
        top->c2h___05Fready = credit >= 8 * 1000000;
    }

    // What the ports transferred in cycle `now`; true if anything.
    bool transfer(Vtop* top, uint64_t now) {
        bool moved = false;
        if (top->h2c___05Fvalid && top->h2c___05Fready) {
            commands.taken();
            if (reset_after && commands.bytes >= reset_after) {
                reset_after = 0;
                reset_now = true;
            }
            moved = true;
        }
#ifdef NEOFPGA_WEIGHTS
        if (top->weights___05Fvalid && top->weights___05Fready) {
            weights.taken();
            moved = true;
        }
#endif
        if (top->c2h___05Fvalid && top->c2h___05Fready) {
            credit -= 8 * 1000000;
            uint64_t data = top->c2h___05Fpayload[0] | static_cast<uint64_t>(top->c2h___05Fpayload[1]) << 32;
            uint32_t keep = top->c2h___05Fpayload[2] & 0xFF;
            for (int b = 0; b < 8; ++b)
                if (keep >> b & 1) gathering.push_back(static_cast<uint8_t>(data >> (8 * b)));
            if (top->c2h___05Fpayload[2] >> 8 & 1) {
                ++transfers_out;
                bytes_out += gathering.size();
                if (transfers_out == cut_transfer) gathering.resize(gathering.size() / 2);
                uint64_t due = std::max(now + latency, outgoing.empty() ? 0 : outgoing.back().due);
                outgoing.push_back(Answer{std::move(gathering), due});
                gathering.clear();
            }
            moved = true;
        }
        return moved;
    }

    // The design was reset: the DMA engines drop what was in flight.
    void drop_in_flight() {
        commands.incoming.clear();
#ifdef NEOFPGA_WEIGHTS
        weights.incoming.clear();
#endif
        gathering.clear();
    }

    bool busy() const {
        bool weights_busy = false;
#ifdef NEOFPGA_WEIGHTS
        weights_busy = !weights.incoming.empty();
#endif
        return (!commands.incoming.empty() && !stalled()) || weights_busy || !outgoing.empty();
    }
    bool output_waiting() const { return out_sent < out.size(); }

    // Sleep until the host writes, or can take more of our output (or a signal, or POLL_MS).
    void wait() const {
        pollfd what[3]{};
        int count = 0;
        what[count].fd = commands.fd;
        what[count++].events = POLLIN;
#ifdef NEOFPGA_WEIGHTS
        what[count].fd = weights.fd;
        what[count++].events = POLLIN;
#endif
        if (output_waiting()) {
            what[count].fd = c2h;
            what[count++].events = POLLOUT;
        }
        poll(what, count, POLL_MS);
    }

    uint64_t transfers_in() const {
#ifdef NEOFPGA_WEIGHTS
        return commands.transfers + weights.transfers;
#else
        return commands.transfers;
#endif
    }
    uint64_t bytes_in() const {
#ifdef NEOFPGA_WEIGHTS
        return commands.bytes + weights.bytes;
#else
        return commands.bytes;
#endif
    }

private:
    struct Answer {
        std::vector<uint8_t> data;
        uint64_t due;  // the cycle it reaches the pipe
    };
    std::string c2h_path;
    int c2h = -1;
    std::deque<Answer> outgoing;
    std::vector<uint8_t> gathering, out;
    size_t out_sent = 0;
    uint64_t credit = 0;    // C2H bandwidth, in millionths of a byte

    bool stalled() const { return stall_after && commands.bytes >= stall_after; }

    // A named pipe at `path`, opened for reading and writing (so neither end ever sees the other close).
    static int make_pipe(const std::string& path) {
        if (mkfifo(path.c_str(), 0600) < 0 && errno != EEXIST) fail(path.c_str());
        struct stat info{};
        if (stat(path.c_str(), &info) < 0 || !S_ISFIFO(info.st_mode)) {
            errno = EEXIST;
            fail((path + " exists and is not a named pipe").c_str());
        }
        int fd = open(path.c_str(), O_RDWR | O_NONBLOCK);
        if (fd < 0) fail(path.c_str());
        fcntl(fd, F_SETPIPE_SZ, static_cast<int>(H2cChannel::READ_SIZE));  // a transfer at once, where allowed
        return fd;
    }
};
#endif

#ifdef NEOFPGA_DRAM
// A DRAM behind LiteDRAM's controller, as the design's port sees it: 16-byte words, each of
// `bursts` column accesses at consecutive columns (mapped ROW_BANK_COL), scheduled in order by an
// open-row controller in its own clock (sys_hz) with the chip's timings: an access to a closed row
// waits for precharge (tRAS after its activate, tWR after a write's data) and tRP, activates (tRRD
// after any other, and ROW_OVERHEAD after the column access before it) and waits tRCD; column
// accesses are tCCD apart, a read tWTR after a write; every tREFI all rows close for tRP + tRFC.
// Up to QUEUE commands wait in the controller; a read's data comes read_latency controller cycles
// after its last column access, then CROSSING design cycles later (the clock-domain crossing),
// holding what the word held when the read was taken. A write's data is taken when the design
// offers it, and no command is taken while a write waits for its data.
class Dram {
public:
    static constexpr int WORD_BYTES = 16;
    static constexpr size_t QUEUE = 16;      // LiteDRAM's command buffer (cmd_buffer_depth)
    static constexpr uint64_t CROSSING = 2;  // design cycles through the clock-domain crossing, each way
    // LiteDRAM's own cycles beyond the chip's timings, calibrated on its SDR controller in
    // simulation (docs/DRAM.md): a row is opened only after the column access before it (no bank
    // opens its next row ahead), and 5 cycles of its bank machine and command multiplexer later.
    static constexpr int64_t ROW_OVERHEAD = 5;

    uint64_t words = 0, sys_hz = 0, accel_hz = 0;
    int64_t banks = 0, rows = 0, row_words = 0, word_bytes = 0, read_latency = 0;
    int64_t tRP = 0, tRCD = 0, tRAS = 0, tWR = 0, tWTR = 0, tCCD = 0, tRRD = 0, tRFC = 0, tREFI = 0;
    int stuck_bit = -1;
    uint64_t reads = 0, writes = 0;

    void configure(const std::string& text) {
        for_each_setting("--dram", text, [&](const std::string& key, uint64_t value) { set(key, value); });
        if (!words || !sys_hz || !accel_hz || !banks || !rows || !row_words || !word_bytes || WORD_BYTES % word_bytes
                || !tCCD || !tREFI)
            usage("--dram needs words, sys_hz, accel_hz, banks, rows, row_words, word_bytes (a divisor of 16), "
                  "tCCD, tREFI");
        bursts = WORD_BYTES / word_bytes;
        if (words * bursts > static_cast<uint64_t>(banks * rows * row_words)) usage("--dram: more words than the chip");
        storage = static_cast<uint8_t*>(std::calloc(words, WORD_BYTES));  // untouched pages stay unallocated
        if (!storage) fail("calloc");
        bank.assign(banks, Bank{});
        next_refresh = tREFI;
    }

    void preload(const char* path) {
        FILE* file = std::fopen(path, "rb");
        if (!file) fail(path);
        size_t got = std::fread(storage, 1, words * WORD_BYTES, file);
        bool more = std::fgetc(file) != EOF;
        std::fclose(file);
        if (more) usage("--dram-init: the file is larger than the DRAM");
        std::fprintf(stderr, "Vboard: %zu bytes of DRAM preloaded from %s\n", got, path);
    }

    // The port's inputs for design cycle `now`, before the clock edge.
    void drive(Vtop* top, uint64_t now) {
        while (!queued.empty() && queued.front() <= sys_time(now)) queued.pop_front();
        top->dram___05Fcmd___05Fready = !write_waiting && queued.size() < QUEUE;
        top->dram___05Fwdata___05Fready = write_waiting;
        bool due = !answers.empty() && answers.front().due <= now;
        top->dram___05Frdata___05Fvalid = due;
        if (due) {
            const uint8_t* word = answers.front().data;
            for (int i = 0; i < WORD_BYTES / 4; ++i) {
                uint32_t value;
                std::memcpy(&value, word + 4 * i, 4);
                top->dram___05Frdata___05Fpayload[i] = value;
            }
        }
    }

    // What the port transferred in cycle `now` (after drive() and eval with the clock low); true if anything.
    bool transfer(Vtop* top, uint64_t now) {
        bool moved = false;
        if (top->dram___05Frdata___05Fvalid && top->dram___05Frdata___05Fready) {
            answers.pop_front();
            moved = true;
        }
        if (top->dram___05Fwdata___05Fvalid && top->dram___05Fwdata___05Fready) {
            uint8_t* word = storage + write_word * WORD_BYTES;
            uint32_t enables = (top->dram___05Fwdata___05Fpayload[4]) & 0xFFFF;
            for (int b = 0; b < WORD_BYTES; ++b)
                if (enables >> b & 1)
                    word[b] = static_cast<uint8_t>(top->dram___05Fwdata___05Fpayload[b / 4] >> (8 * (b % 4)));
            queued.push_back(schedule(write_word, true, sys_time(now)));
            write_waiting = false;
            ++writes;
            moved = true;
        }
        if (top->dram___05Fcmd___05Fvalid && top->dram___05Fcmd___05Fready) {
            uint64_t command = top->dram___05Fcmd___05Fpayload;
            uint64_t address = command & ((uint64_t{1} << address_bits()) - 1);
            bool write = command >> address_bits() & 1;
            if (stuck_bit >= 0) address &= ~(uint64_t{1} << stuck_bit);
            address %= words;  // past the DRAM, the address wraps, as the chip's unused bits do
            if (write) {
                write_waiting = true;
                write_word = address;
            } else {
                int64_t done = schedule(address, false, sys_time(now));
                queued.push_back(done);
                uint64_t due = design_time(done + read_latency) + CROSSING;
                if (!answers.empty() && due <= answers.back().due) due = answers.back().due + 1;
                Answer answer{std::max(due, now + 2 * CROSSING), {}};
                std::memcpy(answer.data, storage + address * WORD_BYTES, WORD_BYTES);  // in order: before later writes
                answers.push_back(answer);
                ++reads;
            }
            moved = true;
        }
        return moved;
    }

    bool busy() const { return write_waiting || !answers.empty(); }

    void set_address_bits(int bits) { address_width = bits; }

private:
    struct Bank {
        int64_t row = -1;
        int64_t activated = 0;
        int64_t precharge_ok = 0;  // the earliest precharge: tRAS after the activate, tWR after a write
    };
    struct Answer {
        uint64_t due;  // the design cycle its data is offered
        uint8_t data[WORD_BYTES];
    };

    int64_t bursts = 1;
    int address_width = 0;
    uint8_t* storage = nullptr;
    std::vector<Bank> bank;
    int64_t last_column = -(int64_t{1} << 40), last_write = -(int64_t{1} << 40), last_activate = -(int64_t{1} << 40);
    int64_t activate_ok = 0;  // after a refresh
    int64_t next_refresh = 0;
    std::deque<int64_t> queued;  // the controller cycle each accepted command's last column access takes place
    std::deque<Answer> answers;
    bool write_waiting = false;
    uint64_t write_word = 0;

    int address_bits() const { return address_width; }
    int64_t sys_time(uint64_t design_cycle) const {
        return static_cast<int64_t>(static_cast<unsigned __int128>(design_cycle) * sys_hz / accel_hz);
    }
    uint64_t design_time(int64_t sys_cycle) const {  // the first design cycle at or after it
        return static_cast<uint64_t>((static_cast<unsigned __int128>(sys_cycle) * accel_hz + sys_hz - 1) / sys_hz);
    }

    void set(const std::string& key, uint64_t value) {
        int64_t v = static_cast<int64_t>(value);
        if (key == "words") words = value;
        else if (key == "sys_hz") sys_hz = value;
        else if (key == "accel_hz") accel_hz = value;
        else if (key == "banks") banks = v;
        else if (key == "rows") rows = v;
        else if (key == "row_words") row_words = v;
        else if (key == "word_bytes") word_bytes = v;
        else if (key == "read_latency") read_latency = v;
        else if (key == "tRP") tRP = v;
        else if (key == "tRCD") tRCD = v;
        else if (key == "tRAS") tRAS = v;
        else if (key == "tWR") tWR = v;
        else if (key == "tWTR") tWTR = v;
        else if (key == "tCCD") tCCD = v;
        else if (key == "tRRD") tRRD = v;
        else if (key == "tRFC") tRFC = v;
        else if (key == "tREFI") tREFI = v;
        else usage(("--dram: unknown key " + key).c_str());
    }

    // The controller cycle of the last column access of word `word`, arriving at controller cycle `t`.
    int64_t schedule(uint64_t word, bool write, int64_t t) {
        for (int64_t b = 0; b < bursts; ++b) {
            int64_t access = static_cast<int64_t>(word) * bursts + b;
            int64_t which = access / row_words % banks, row = access / (row_words * banks);
            while (std::max(t, last_column + tCCD) >= next_refresh) {  // precharge all, refresh
                int64_t start = std::max(next_refresh, last_column + 1);
                for (const Bank& k : bank)
                    if (k.row >= 0) start = std::max(start, k.precharge_ok);
                for (Bank& k : bank) k.row = -1;
                activate_ok = start + tRP + tRFC;
                t = std::max(t, activate_ok);
                next_refresh += tREFI;
            }
            Bank& k = bank[which];
            int64_t ready = t;
            if (k.row != row) {
                int64_t activate = std::max(k.row < 0 ? t : std::max(t, k.precharge_ok) + tRP, last_column)
                                   + ROW_OVERHEAD;
                activate = std::max({activate, last_activate + tRRD, activate_ok});
                k.row = row;
                k.activated = last_activate = activate;
                k.precharge_ok = activate + tRAS;
                ready = activate + tRCD;
            }
            int64_t column = std::max(ready, last_column + tCCD);
            if (!write) column = std::max(column, last_write + tWTR);
            last_column = column;
            if (write) {
                last_write = column;
                k.precharge_ok = std::max(k.precharge_ok, column + 1 + tWR);
            } else {
                k.precharge_ok = std::max(k.precharge_ok, column + 1);
            }
            t = column;
        }
        return t;
    }
};
#endif

}  // namespace

int main(int argc, char** argv) {
    // A board outlives nothing: if the process that started it dies, so does the board.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int port = 0;
    const char* trace_file = nullptr;
#ifdef NEOFPGA_DRAM
    Dram dram;
    const char* dram_init = nullptr;
#endif
#ifdef NEOFPGA_XDMA
    Xdma xdma;
    const char* xdma_prefix = nullptr;
#endif
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
#ifdef NEOFPGA_DRAM
        else if (option == "--dram") dram.configure(value);
        else if (option == "--dram-init") dram_init = value;
        else if (option == "--dram-stuck-bit") dram.stuck_bit = static_cast<int>(number(value));
#endif
#ifdef NEOFPGA_XDMA
        else if (option == "--xdma") xdma_prefix = value;
        else if (option == "--dma") xdma.configure(value);
        else if (option == "--reset-after-bytes") xdma.reset_after = number(value);
        else if (option == "--stall-after-bytes") xdma.stall_after = number(value);
        else if (option == "--cut-transfer") xdma.cut_transfer = number(value);
#endif
        else usage(("unknown option " + option).c_str());
    }
#ifdef NEOFPGA_DRAM
    if (!dram.words) usage("this board has DRAM: give --dram");
    dram.set_address_bits(NEOFPGA_DRAM);
    if (dram_init) dram.preload(dram_init);
#endif

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

#ifdef NEOFPGA_XDMA
    if (!xdma_prefix) usage("this board has a PCIe port: give --xdma PREFIX");
    xdma.open_pipes(xdma_prefix);
    std::printf("xdma at %s\n", xdma_prefix);
    (void)port;
#else
    Link link;
    link.listener = listen_on(port);
    std::printf("listening on %d\n", port);
#endif
    std::fflush(stdout);

    uint64_t cycles = 0, last_moved = 0;
    Clock::duration stopped{};
    auto start = Clock::now();

    // One clock cycle: present the inputs, settle with clk low, see what the edge will transfer,
    // then the rising edge. True if a byte moved.
    auto cycle = [&]() {
#ifdef NEOFPGA_XDMA
        xdma.drive(top.get(), cycles);
#else
        bool offer = link.input_waiting();
        top->i___05Fvalid = offer;
        if (offer) top->i___05Fpayload = link.in[link.in_head];
        top->o___05Fready = link.out.size() < OUT_LIMIT;
#endif
#ifdef NEOFPGA_DRAM
        dram.drive(top.get(), cycles);
#endif
        top->clk = 0;
        top->eval();
#if VM_TRACE_FST
        if (trace) trace->dump(2 * cycles);
#endif
#ifdef NEOFPGA_XDMA
        bool taken = xdma.transfer(top.get(), cycles), given = false;
#else
        bool taken = offer && top->i___05Fready;
        bool given = top->o___05Fvalid && top->o___05Fready;
        if (given) link.out.push_back(top->o___05Fpayload);
        link.in_head += taken;
#endif
#ifdef NEOFPGA_DRAM
        bool dram_moved = dram.transfer(top.get(), cycles);
#else
        bool dram_moved = false;
#endif
        top->clk = 1;
        top->eval();
#if VM_TRACE_FST
        if (trace) trace->dump(2 * cycles + 1);
#endif
        ++cycles;
        return taken || given || dram_moved;
    };

    top->rst = 1;
    for (int i = 0; i < RESET_CYCLES; ++i) cycle();
    top->rst = 0;

    while (!stop_requested && (max_cycles == 0 || cycles < max_cycles)) {
        uint64_t batch = IO_INTERVAL;
        if (max_cycles && max_cycles - cycles < batch) batch = max_cycles - cycles;
        bool moved = false;
        for (uint64_t i = 0; i < batch; ++i) moved |= cycle();
#ifdef NEOFPGA_XDMA
        if (xdma.reset_now) {  // a fault: the card is reset mid-transfer
            xdma.reset_now = false;
            xdma.drop_in_flight();
            top->rst = 1;
            for (int i = 0; i < RESET_CYCLES; ++i) cycle();
            top->rst = 0;
            std::fprintf(stderr, "Vboard: reset at cycle %llu\n", static_cast<unsigned long long>(cycles));
        }
        if (xdma.serve(cycles)) moved = true;
        if (moved || xdma.busy()) last_moved = cycles;
        while (idle_cycles && cycles - last_moved >= idle_cycles && !stop_requested) {
            auto sleep = Clock::now();
            xdma.wait();
            stopped += Clock::now() - sleep;
            if (xdma.serve(cycles)) last_moved = cycles;
        }
#else
        if (link.serve()) moved = true;
        if (moved) last_moved = cycles;
        while (idle_cycles && cycles - last_moved >= idle_cycles && !link.input_waiting() && !stop_requested) {
            auto sleep = Clock::now();
            link.wait();
            stopped += Clock::now() - sleep;
            if (link.serve()) last_moved = cycles;
        }
#endif
    }

    double wall = seconds(Clock::now() - start - stopped);
#if VM_TRACE_FST
    if (trace) trace->close();
#endif
    top->final();
    std::fprintf(stderr, "simulated %llu cycles in %.3f s (%.0f cycles/s), stopped %.3f s while idle",
                 static_cast<unsigned long long>(cycles), wall, wall > 0 ? cycles / wall : 0.0,
                 seconds(stopped));
#ifdef NEOFPGA_DRAM
    std::fprintf(stderr, ", DRAM %llu reads %llu writes", static_cast<unsigned long long>(dram.reads),
                 static_cast<unsigned long long>(dram.writes));
#endif
#ifdef NEOFPGA_XDMA
    std::fprintf(stderr, ", DMA %llu transfers in %llu bytes, %llu transfers out %llu bytes",
                 static_cast<unsigned long long>(xdma.transfers_in()), static_cast<unsigned long long>(xdma.bytes_in()),
                 static_cast<unsigned long long>(xdma.transfers_out), static_cast<unsigned long long>(xdma.bytes_out));
    xdma.remove_pipes();
#endif
    std::fprintf(stderr, "\n");
    return 0;
}
