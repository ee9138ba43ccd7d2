// The C boundary between mislas and PyTorch's c10d (the engine behind torch.distributed):
// a TCPStore rendezvous and a ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA) on it.
//
// Every function catches every C++ exception and returns it as text (`*err`, malloc'ed: the
// caller frees it); 0 is success. The gradient hooks of the overlapped all-reduce (below) run
// inside libtorch's backward pass: they catch everything too, keep the first error, and the
// step reads it after the backward pass (mislas_c10d_overlap_finish). Gloo and NCCL objects are built by libtorch itself
// (ProcessGroupGloo::createDeviceForHostname, the ProcessGroup constructors): the gloo
// headers found at build time may be older than the gloo inside libtorch_cpu, so no gloo type
// is constructed, subclassed or inspected here.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <c10/util/Logging.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
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

// ---- The gradient all-reduce overlapped with the backward pass ----
//
// PyTorch's DDP Reducer (torch/csrc/distributed/c10d/reducer.cpp), reduced to what mislas
// needs. The parameters are split into buckets by a plan made in Rust (replicas.rs); a hook on
// each parameter runs once autograd has accumulated its gradient (AccumulateGrad's
// post-accumulate-grad hook, what `Tensor.register_post_accumulate_grad_hook` registers).
// When every parameter of a bucket is ready and every earlier bucket has been launched, the
// bucket's gradients are flattened and its asynchronous all-reduce starts: the buckets start in
// plan order on every rank, as the Reducer's `next_bucket_` makes them, so that the ranks'
// collectives match one for one. After the backward pass `finish` starts the buckets whose
// parameters did not all report (a parameter outside this backward pass), waits for every
// bucket, divides the sums by the world size and copies them back into the gradients: the
// operations of the all-reduce after the backward pass (replicas.rs), in the same order, so
// equal buckets give bit-identical gradients.

struct Bucket {
  std::vector<size_t> params;     // indices into Overlap::params, in flattening order
  size_t pending = 0;             // its parameters not yet ready in this backward pass
  bool launched = false;
  std::vector<at::Tensor> grads;  // the gradients flattened into `flat`
  at::Tensor flat;
  c10::intrusive_ptr<c10d::Work> work;
};

struct Overlap {
  std::mutex mu;
  c10::intrusive_ptr<c10d::Backend> backend;  // reset when the owner frees this
  std::chrono::milliseconds timeout;
  std::vector<at::Tensor> params;
  std::vector<size_t> bucket_of;  // parameter -> bucket
  std::vector<char> ready;        // the parameter's hook ran in this backward pass
  std::vector<Bucket> buckets;
  size_t next = 0;                // the next bucket to launch
  bool armed = false;
  std::string error;              // the first failure inside a hook
  size_t launched_by_hooks = 0;   // buckets launched inside the last backward pass
  double hook_seconds = 0;        // time inside the hooks since the last take

  // Flattens bucket `b`'s defined gradients and starts their all-reduce (mu held).
  void launch(Bucket& b) {
    b.launched = true;
    std::vector<at::Tensor> views;
    for (size_t i : b.params) {
      const at::Tensor& g = params[i].grad();
      if (!g.defined()) continue;
      b.grads.push_back(g);
      views.push_back(g.reshape(-1));
    }
    if (views.empty()) return;
    b.flat = at::cat(views, 0);
    std::vector<at::Tensor> one{b.flat};
    b.work = backend->allreduce(one, c10d::AllreduceOptions());
  }

  // Launches the buckets, in order, from `next` on while they are complete (mu held).
  size_t launch_complete() {
    size_t before = next;
    while (next < buckets.size() && buckets[next].pending == 0) launch(buckets[next++]);
    return next - before;
  }

  // The hook of parameter `index`: autograd accumulated its gradient.
  void on_ready(size_t index) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || !error.empty() || !backend || ready[index]) return;
    auto started = std::chrono::steady_clock::now();
    try {
      ready[index] = 1;
      buckets[bucket_of[index]].pending -= 1;
      launched_by_hooks += launch_complete();
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown C++ exception in a gradient hook";
    }
    std::chrono::duration<double> spent = std::chrono::steady_clock::now() - started;
    hook_seconds += spent.count();
  }

  // Forgets the backward pass: nothing launched, nothing ready, disarmed (mu held).
  void reset() noexcept {
    for (auto& b : buckets) {
      b.pending = b.params.size();
      b.launched = false;
      b.grads.clear();
      b.flat = at::Tensor();
      b.work.reset();
    }
    std::fill(ready.begin(), ready.end(), 0);
    next = 0;
    armed = false;
    error.clear();
  }

  // After the backward pass: launches what the hooks did not, waits, divides by `world_size`
  // and writes the averages into the gradients; throws a hook's error or the wait's (mu held).
  void finish(double world_size) {
    struct Reset {
      Overlap* o;
      ~Reset() { o->reset(); }
    } reset_at_exit{this};
    armed = false;
    if (!error.empty()) throw std::runtime_error(error);
    if (!backend) throw std::runtime_error("the process group was left");
    while (next < buckets.size()) launch(buckets[next++]);
    for (auto& b : buckets) {
      if (!b.work) continue;
      b.work->wait(timeout);
      b.flat.div_(world_size);
      int64_t at = 0;
      for (auto& g : b.grads) {
        int64_t n = g.numel();
        g.copy_(b.flat.narrow(0, at, n).view_as(g));
        at += n;
      }
    }
  }
};

// The post-accumulate-grad hook on one parameter; never throws into autograd.
struct ReadyHook : torch::autograd::PostAccumulateGradHook {
  ReadyHook(std::shared_ptr<Overlap> overlap, size_t index)
      : overlap(std::move(overlap)), index(index) {}
  void operator()(const torch::autograd::Variable& /*param*/) override {
    try {
      overlap->on_ready(index);
    } catch (...) {
      // Only taking the lock can throw here; the bucket then starts in `finish`.
    }
  }
  std::shared_ptr<Overlap> overlap;
  size_t index;
};

// Removes this overlap's hooks from its parameters (another owner's hook stays).
void unhook(Overlap* o) {
  for (auto& p : o->params) {
    auto& hook = torch::autograd::impl::post_acc_grad_hooks(p);
    auto* mine = dynamic_cast<ReadyHook*>(hook.get());
    if (mine != nullptr && mine->overlap.get() == o) {
      torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
    }
  }
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

// The overlapped all-reduce of `params` (n leaf tensors that require grad) on group `g`:
// `plan` lists the parameter indices bucket after bucket, `bucket_lens[k]` of them in bucket k
// (n_buckets buckets, every parameter once). Registers a hook on every parameter; the handle
// (freed with mislas_c10d_overlap_free, before the group) keeps its own reference to the
// backend.
void* mislas_c10d_overlap_new(void* g, at::Tensor** params, size_t n, const size_t* plan,
                              const size_t* bucket_lens, size_t n_buckets, char** err) {
  std::shared_ptr<Overlap>* handle = nullptr;
  guarded(err, [&] {
    auto group = static_cast<Group*>(g);
    auto o = std::make_shared<Overlap>();
    o->backend = group->backend;
    o->timeout = group->timeout;
    o->params = tensors_of(params, n);
    o->bucket_of.assign(n, n_buckets);
    o->ready.assign(n, 0);
    size_t at = 0;
    for (size_t k = 0; k < n_buckets; ++k) {
      Bucket b;
      for (size_t j = 0; j < bucket_lens[k]; ++j, ++at) {
        size_t i = plan[at];
        if (i >= n || o->bucket_of[i] != n_buckets) {
          throw std::runtime_error("bucket plan names a parameter twice or out of range");
        }
        o->bucket_of[i] = k;
        b.params.push_back(i);
      }
      b.pending = b.params.size();
      o->buckets.push_back(std::move(b));
    }
    for (size_t i = 0; i < n; ++i) {
      const auto& p = o->params[i];
      if (o->bucket_of[i] == n_buckets) throw std::runtime_error("bucket plan misses a parameter");
      if (!p.requires_grad() || !p.is_leaf()) {
        throw std::runtime_error("a parameter of the overlapped all-reduce is not a leaf "
                                 "tensor that requires grad");
      }
    }
    if (!o->backend) throw std::runtime_error("the process group has no backend");
    for (size_t i = 0; i < n; ++i) {
      torch::autograd::impl::set_post_acc_grad_hooks(o->params[i],
                                                     std::make_unique<ReadyHook>(o, i));
    }
    handle = new std::shared_ptr<Overlap>(o);
  });
  return handle;
}

// 1 when `params` are the parameters of the overlap, in the same order; else 0.
int mislas_c10d_overlap_matches(void* h, at::Tensor** params, size_t n) {
  auto& o = *static_cast<std::shared_ptr<Overlap>*>(h);
  if (o->params.size() != n) return 0;
  for (size_t i = 0; i < n; ++i) {
    if (!o->params[i].is_same(*params[i])) return 0;
  }
  return 1;
}

// From now until mislas_c10d_overlap_finish, each complete bucket starts its all-reduce.
int mislas_c10d_overlap_arm(void* h, char** err) {
  auto& o = *static_cast<std::shared_ptr<Overlap>*>(h);
  return guarded(err, [&] {
    std::lock_guard<std::mutex> lock(o->mu);
    o->reset();
    o->launched_by_hooks = 0;
    o->armed = true;
  });
}

// After the backward pass (armed or not): every bucket summed over the ranks, divided by
// `world_size` and written into the gradients; a hook's error or a failed wait is `*err`.
int mislas_c10d_overlap_finish(void* h, double world_size, char** err) {
  auto& o = *static_cast<std::shared_ptr<Overlap>*>(h);
  return guarded(err, [&] {
    std::lock_guard<std::mutex> lock(o->mu);
    o->finish(world_size);
  });
}

// The plan's bucket count, the buckets the hooks launched in the last backward pass, and the
// seconds spent inside the hooks since the last call (then reset).
void mislas_c10d_overlap_stats(void* h, size_t* buckets, size_t* launched_by_hooks,
                               double* hook_seconds) {
  auto& o = *static_cast<std::shared_ptr<Overlap>*>(h);
  *buckets = o->buckets.size();
  *launched_by_hooks = 0;
  *hook_seconds = 0;
  try {
    std::lock_guard<std::mutex> lock(o->mu);
    *launched_by_hooks = o->launched_by_hooks;
    *hook_seconds = o->hook_seconds;
    o->hook_seconds = 0;
  } catch (...) {
    // Only taking the lock can throw: the figures stay 0.
  }
}

// Removes the hooks and drops the handle's reference to the backend.
void mislas_c10d_overlap_free(void* h) {
  auto handle = static_cast<std::shared_ptr<Overlap>*>(h);
  try {
    {
      std::lock_guard<std::mutex> lock((*handle)->mu);
      (*handle)->reset();
      (*handle)->backend.reset();
    }
    unhook(handle->get());
  } catch (...) {
    // Freeing must not throw across the boundary; a hook left behind finds no backend.
  }
  delete handle;
}

}  // extern "C"
