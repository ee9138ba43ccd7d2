//! The training methods of MiSLAS (Zhong et al., CVPR 2021) and the optimisation around them:
//!
//! * [`mixup`]: mixup (Zhang et al., 2018) for stage-1 representation learning;
//! * [`las`]: label-aware smoothing (MiSLAS §4.2, Eq. 6) for stage-2 classifier re-learning;
//! * [`schedule`]: the learning-rate schedules of `train_stage1.py` and `train_stage2.py`;
//! * [`sgd`]: SGD with momentum and weight decay, as `torch.optim.SGD`, with parameter groups
//!   and a checkpointable state;
//! * [`loss`]: the stage-1 losses of the long-tail baselines (Balanced Softmax, logit
//!   adjustment, LDAM, focal, class-balanced weights and DRW);
//! * [`maxnorm`]: MaxNorm's projection of weight balancing's classifier stage;
//! * [`grad_scaler`]: dynamic loss scaling for fp16 mixed precision, as `torch.amp.GradScaler`.
pub mod grad_scaler;
pub mod las;
pub mod loss;
pub mod maxnorm;
pub mod mixup;
pub mod schedule;
pub mod sgd;
