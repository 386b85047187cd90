#pragma once
// Edits SettingsValues: sampling, model folder and device, caches and memory. Shows the
// model's prompt template (fixed by the model's config in this version).
#include <QDialog>

class QPlainTextEdit;

#include "ui/settings.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QSpinBox;

class SettingsDialog : public QDialog {
    Q_OBJECT

public:
    SettingsDialog(const SettingsValues &values, const QString &promptTemplate, bool cudaAvailable,
                   QWidget *parent = nullptr);
    SettingsValues values() const;
    // Model folders to offer in a list above the folder field (name, folder): the built-in
    // model and the imported ones (File > Import Model…).
    void offerModels(const QList<QPair<QString, QString>> &models);

private:
    QWidget *samplingPage();
    QWidget *modelPage(const QString &promptTemplate, bool cudaAvailable);
    QWidget *cachePage();
    void updateEnabled();

    SettingsValues initial_;
    // Sampling
    QCheckBox *greedy_ = nullptr;
    QDoubleSpinBox *temperature_ = nullptr, *topP_ = nullptr, *repetition_ = nullptr;
    QSpinBox *topK_ = nullptr, *maxNew_ = nullptr, *seed_ = nullptr;
    // Model
    QLineEdit *modelDir_ = nullptr;
    QComboBox *installed_ = nullptr;
    QComboBox *device_ = nullptr, *dtype_ = nullptr;
    QSpinBox *threads_ = nullptr;
    QPlainTextEdit *systemPrompt_ = nullptr;
    // Caches and memory
    QCheckBox *kvReuse_ = nullptr, *featureCache_ = nullptr, *prefixCache_ = nullptr,
              *responseCache_ = nullptr, *pool_ = nullptr;
    QSpinBox *featureDevice_ = nullptr, *featureHost_ = nullptr, *featureDisk_ = nullptr,
             *poolSize_ = nullptr;
    QLineEdit *featureDir_ = nullptr;
    QLineEdit *redisUrl_ = nullptr;
    QComboBox *eviction_ = nullptr;
    QComboBox *kvDtype_ = nullptr;
    QSpinBox *stateDisk_ = nullptr;
};
