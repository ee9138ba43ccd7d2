// The C boundary between mislas and PyTorch's c10d (the engine behind torch.distributed):
// a TCPStore rendezvous and a ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA) on it.
//
// Every function catches every C++ exception and returns it as text (`*err`, malloc'ed: the
// caller frees it); 0 is success. Gloo and NCCL objects are built by libtorch itself
// (ProcessGroupGloo::createDeviceForHostname, the ProcessGroup constructors): the gloo
// headers found at build time may be older than the gloo inside libtorch_cpu, so no gloo type
// is constructed, subclassed or inspected here.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MISLAS_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

char* copy_text(const char* text) {
  size_t n = std::strlen(text);
  char* out = static_cast<char*>(std::malloc(n + 1));
  if (out != nullptr) std::memcpy(out, text, n + 1);
  return out;
}

// Runs `body`, turning any exception into `*err` and a non-zero return.
template <typename F>
int guarded(char** err, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    *err = copy_text(e.what());
  } catch (...) {
    *err = copy_text("unknown C++ exception in c10d");
  }
  return 1;
}

std::vector<at::Tensor> tensors_of(at::Tensor** tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

void wait(Group* g, const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait(g->timeout);
}

}  // namespace

extern "C" {

// Keeps c10d's own log lines (warnings of its sockets, errors it also throws) off stderr,
// where they would paint over the terminal UI: every failure comes back as an exception.
void mislas_c10d_quiet() { FLAGS_caffe2_log_level = 3; }

// Whether this build has ProcessGroupNCCL.
int mislas_c10d_has_nccl() {
#ifdef MISLAS_NCCL
  return 1;
#else
  return 0;
#endif
}

// Meets at the rendezvous: rank 0 serves the TCPStore at host:port, every rank connects to it.
// `timeout_ms` bounds the rendezvous, every store wait and, after mislas_c10d_connect, every
// collective.
void* mislas_c10d_new(const char* host, uint16_t port, int rank, int world_size,
                      int64_t timeout_ms, char** err) {
  Group* group = nullptr;
  guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = rank == 0;
    opts.numWorkers = static_cast<size_t>(world_size);
    opts.waitWorkers = false;
    opts.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    group = new Group{store, c10::intrusive_ptr<c10d::Backend>(), timeout};
  });
  return group;
}

// Connects the ranks' backend (0: Gloo on `host`'s interface, 1: NCCL) through the store.
int mislas_c10d_connect(void* g, const char* host, int rank, int world_size, int backend,
                        char** err) {
  auto group = static_cast<Group*>(g);
  return guarded(err, [&] {
    if (backend == 0) {
      auto options = c10d::ProcessGroupGloo::Options::create(group->timeout);
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
      group->backend =
          c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, rank, world_size, options);
    } else {
#ifdef MISLAS_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = group->timeout;
      group->backend =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, rank, world_size, options);
#else
      throw std::runtime_error("this mislas was built without NCCL");
#endif
    }
  });
}

void mislas_c10d_free(void* g) { delete static_cast<Group*>(g); }

// Sums each tensor in place over the ranks (one collective per tensor).
int mislas_c10d_all_reduce_sum(void* g, at::Tensor** tensors, size_t n, char** err) {
  auto group = static_cast<Group*>(g);
  return guarded(err, [&] {
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      wait(group, group->backend->allreduce(one, c10d::AllreduceOptions()));
    }
  });
}

// Copies each tensor of rank `root` into the same tensor of every other rank.
int mislas_c10d_broadcast(void* g, at::Tensor** tensors, size_t n, int root, char** err) {
  auto group = static_cast<Group*>(g);
  return guarded(err, [&] {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      wait(group, group->backend->broadcast(one, opts));
    }
  });
}

// Gathers `input` of every rank into `outputs[r]` (world-size tensors of input's shape).
int mislas_c10d_all_gather(void* g, at::Tensor* input, at::Tensor** outputs, size_t world_size,
                           char** err) {
  auto group = static_cast<Group*>(g);
  return guarded(err, [&] {
    std::vector<std::vector<at::Tensor>> out{tensors_of(outputs, world_size)};
    std::vector<at::Tensor> in{*input};
    wait(group, group->backend->allgather(out, in, c10d::AllgatherOptions()));
  });
}

// Sets `key` to `len` bytes in the store.
int mislas_c10d_store_set(void* g, const char* key, const uint8_t* value, size_t len,
                          char** err) {
  auto group = static_cast<Group*>(g);
  return guarded(err, [&] {
    group->store->set(std::string(key), std::vector<uint8_t>(value, value + len));
  });
}

// Whether `key` is in the store now (no waiting): *present is 1 or 0.
int mislas_c10d_store_check(void* g, const char* key, int* present, char** err) {
  auto group = static_cast<Group*>(g);
  return guarded(err, [&] {
    std::vector<std::string> keys{std::string(key)};
    *present = group->store->check(keys) ? 1 : 0;
  });
}

// Waits up to `timeout_ms` for `key`, then returns its bytes (malloc'ed, `*len` long).
int mislas_c10d_store_get(void* g, const char* key, int64_t timeout_ms, uint8_t** value,
                          size_t* len, char** err) {
  auto group = static_cast<Group*>(g);
  return guarded(err, [&] {
    std::vector<std::string> keys{std::string(key)};
    group->store->wait(keys, std::chrono::milliseconds(timeout_ms));
    auto bytes = group->store->get(keys[0]);
    *len = bytes.size();
    *value = static_cast<uint8_t*>(std::malloc(bytes.size() + 1));
    if (!bytes.empty()) std::memcpy(*value, bytes.data(), bytes.size());
  });
}

}  // extern "C"
